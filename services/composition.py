"""What the composition root (server.open_services) builds: every service, once per process."""

from __future__ import annotations

from dataclasses import dataclass

from services.accounts import AccountService
from services.captcha import CaptchaService
from services.config import Config
from services.db import Database
from services.fraud import FraudGuard
from services.meiduo_pages import MeiduoPages
from services.metrics import Metrics
from services.providers.failover import FailoverSender
from services.receipts import ReceiptStore
from services.redisclient import RedisClient
from services.sessions import SessionStore
from services.sms import SmsCodeService
from services.users import UserRepository


@dataclass(frozen=True)
class Services:
    """Everything handlers may call (through BaseHandler's properties), built once per process."""

    config: Config
    redis: RedisClient
    db: Database
    captchas: CaptchaService
    users: UserRepository
    sms: SmsCodeService
    accounts: AccountService
    sessions: SessionStore
    metrics: Metrics
    sender: FailoverSender
    receipts: ReceiptStore
    fraud: FraudGuard
    meiduo_pages: MeiduoPages | None  # families.meiduo_templates, if set
