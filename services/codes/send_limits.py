"""What one SMS send asks for and takes (SendRequest, Reservation), and the limits it is
counted against (SendLimits): the rules services/codes/reservation.py reserves and gives back."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.codes.costs import to_units
from services.config import LimitsConfig, SmsConfig
from services.store import keys
from services.store.limits import Limit
from services.store.redis_scripts import ScriptArg

HOUR = 3600
DAY = 86400
BUDGET_MESSAGE = "短信服务繁忙，请{seconds}秒后重试"


@dataclass
class Reservation:
    """What one send takes, so that it can be given back if the SMS does not go out."""

    mobile: str
    guard_token: str
    mac: str  # the new code's HMAC
    ip_limit: Limit
    budget: Limit
    # The yuan budget (limits.sms_global_yuan_per_hour), if set: this send's price in UNITS.
    spend: Limit | None = None
    # The code this send's code replaced (mac, tries, expiry ms), to put back on release.
    replaced_code: list[ScriptArg] = field(default_factory=list)
    # Is the mobile registered, as the set of registered numbers said when the one script
    # reserved the send (SendRequest.read_registered)? None: not read, or the set unknown.
    registered: bool | None = None

    @property
    def counts(self) -> tuple[Limit, ...]:
        """The counters taken in one script (one slot): the address, the budget(s)."""
        if self.spend is None:
            return (self.ip_limit, self.budget)
        return (self.ip_limit, self.budget, self.spend)


@dataclass(frozen=True)
class SendRequest:
    """What one send asks to reserve: for which mobile and new code, asked by whom (address,
    proof of work), with which CAPTCHA, at which price."""

    mobile: str
    mac: str  # the new code's HMAC
    client_ip: str
    altcha: object  # a solved proof of work, if one came with the request
    judge_block: bool  # judge the mobile's number block too (FraudGuard.judge)
    captcha_id: str
    answer: str
    price_units: int  # the send's price (UNITS), for the yuan budget
    # Read the set of registered numbers (services/accounts/registered.py) in the one script
    # too, sparing the send that round trip (Reservation.registered); ignored in steps.
    read_registered: bool = False


class SendLimits:
    """The limits of a send: its address's, the global budget (a fraud tier's share of it),
    the yuan budget, and its mobile's resend guard, hourly and daily caps."""

    def __init__(self, sms: SmsConfig, limits: LimitsConfig) -> None:
        self._sms = sms
        self._limits = limits

    def ip_limit(self, client_ip: str) -> Limit:
        return Limit(
            keys.sms_ip_hourly_key(client_ip),
            self._limits.sms_per_ip_hour,
            HOUR,
            "ip_hourly",
            "当前网络发送短信次数过多，请{seconds}秒后重试",
        )

    def budget(self, share: float = 1.0) -> Limit:
        """The global hourly budget, or the `share` of it that a fraud tier may use."""
        budget = self._limits.sms_global_per_hour
        if share < 1:
            # Budget shedding: newcomers and poor segments may use only part of the budget,
            # so near the end of it only clients with a good record are still served.
            limit = max(1, int(budget * share))
            return Limit(keys.sms_global_hourly_key(), limit, HOUR, "budget_shed", BUDGET_MESSAGE)
        return Limit(keys.sms_global_hourly_key(), budget, HOUR, "global_hourly", BUDGET_MESSAGE)

    def spend(self, price_units: int, share: float = 1.0) -> Limit | None:
        """The yuan budget for a send of this price (UNITS), or the `share` of it a fraud tier
        may use; None when limits.sms_global_yuan_per_hour is 0 (no yuan budget)."""
        yuan = self._limits.sms_global_yuan_per_hour
        if yuan <= 0:
            return None
        units = max(1, to_units(yuan * min(share, 1.0)))
        reason = "budget_shed" if share < 1 else "global_yuan_hourly"
        key = keys.sms_global_spend_key()
        return Limit(key, units, HOUR, reason, BUDGET_MESSAGE, cost=max(0, price_units))

    def mobile_limits(self, mobile: str) -> tuple[Limit, Limit, Limit]:
        """The resend guard, the hourly and the daily cap of one mobile."""
        return (
            Limit(
                keys.sms_guard_key(mobile),
                1,
                self._sms.resend_interval,
                "resend_interval",
                "请求过于频繁，请{seconds}秒后重试",
            ),
            Limit(
                keys.sms_mobile_hourly_key(mobile),
                self._limits.sms_per_mobile_hour,
                HOUR,
                "mobile_hourly",
                "该手机号本小时获取验证码次数已达上限，请{seconds}秒后重试",
            ),
            Limit(
                keys.sms_mobile_daily_key(mobile),
                self._limits.sms_per_mobile_day,
                DAY,
                "mobile_daily",
                "该手机号今日获取验证码次数已达上限，请{seconds}秒后重试",
            ),
        )
