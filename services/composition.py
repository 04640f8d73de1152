"""What the composition root (server.open_services) builds: every service, once per process."""

from __future__ import annotations

from dataclasses import dataclass

from services.accounts.consent import ConsentPolicy
from services.accounts.deletion import DeletionService
from services.accounts.devices import DeviceService
from services.accounts.mobile_change import MobileChangeService
from services.accounts.password_change import PasswordChangeService
from services.accounts.service import AccountService
from services.accounts.sessions import SessionStore
from services.accounts.users import UserRepository
from services.captcha.service import CaptchaService
from services.codes.fraud import FraudGuard
from services.codes.receipts import ReceiptStore
from services.codes.sms import SmsCodeService
from services.config import Config
from services.hostapp.bridge import HostBridge
from services.meiduo_pages import MeiduoPages
from services.metrics import Metrics
from services.ops.console import OpsConsole
from services.ops.history import SendHistory
from services.providers.failover import FailoverSender
from services.store.db import Database
from services.store.redisclient import RedisClient
from services.tokens.service import TokenService


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
    mobile_changes: MobileChangeService
    sessions: SessionStore
    metrics: Metrics
    sender: FailoverSender
    receipts: ReceiptStore
    fraud: FraudGuard
    meiduo_pages: MeiduoPages | None  # families.meiduo_templates, if set
    tokens: TokenService  # access and refresh tokens (server.open_tokens)
    history: SendHistory  # the console's per-minute counts
    console: OpsConsole  # the operator console at /ops
    consent: ConsentPolicy
    deletions: DeletionService
    password_changes: PasswordChangeService
    devices: DeviceService
    host: HostBridge | None = None  # the host app's sessions (host_app.kind), if not standalone
