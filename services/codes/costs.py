"""What a send costs, as the providers bill it (costs.* in the configuration).

An SMS is billed per part: a text of up to 70 characters is one message; a longer one is sent
as a long message whose parts carry 67 characters each (the rest is the concatenation header),
and each part is billed. Ronglian and Aliyun count this way for Chinese text, the signature
included (Aliyun puts 【sign name】 in front of the template; a Ronglian template carries its
signature in its registered wording). The text is the template's wording with the code, the
minutes and (Ronglian, sms.webotp_domain) the WebOTP domain filled in.

A call is billed per started minute of its duration; until its result arrives (with the
duration) it counts one minute, and a longer call adds the rest on its receipt.

Money is counted in UNITS per yuan (integers) wherever it is stored: the yuan budget's counter
in Redis and the console's per-minute history.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from services.config import CostsConfig
from services.providers.base import Channel

SINGLE_SMS_CHARS = 70
LONG_SMS_PART_CHARS = 67
UNITS = 10_000  # 0.0001 yuan: the smallest price step any provider quotes is 0.001
CODE_SAMPLE = "000000"  # every code has 6 digits: the billed length does not depend on it


def sms_parts(text: str) -> int:
    """The parts a provider bills for this text (70 characters, 67 a part beyond)."""
    length = len(text)
    if length <= SINGLE_SMS_CHARS:
        return 1
    return math.ceil(length / LONG_SMS_PART_CHARS)


def call_minutes(duration_seconds: int | None) -> int:
    """Started minutes of a call (a call with no duration yet counts one)."""
    if not duration_seconds or duration_seconds <= 0:
        return 1
    return math.ceil(duration_seconds / 60)


class SmsPricing:
    """Prices of one code sent through each provider and channel, from the configuration."""

    def __init__(
        self, costs: CostsConfig, *, aliyun_sign: str, webotp_domain: str, ttl_minutes: int
    ) -> None:
        self._costs = costs
        ronglian = (
            costs.ronglian_sms_text.replace("{1}", CODE_SAMPLE)
            .replace("{2}", str(ttl_minutes))
            .replace("{3}", webotp_domain)
        )
        aliyun = f"【{aliyun_sign}】" + costs.aliyun_sms_text.replace("${code}", CODE_SAMPLE)
        self.texts = {"ronglian": ronglian, "aliyun": aliyun}
        self._unit_price = {
            ("ronglian", Channel.SMS): costs.ronglian_sms,
            ("ronglian", Channel.VOICE): costs.ronglian_voice,
            ("aliyun", Channel.SMS): costs.aliyun_sms,
        }

    def parts(self, provider: str) -> int:
        """SMS parts one code costs through this provider."""
        return sms_parts(self.texts.get(provider, ""))

    def per_minute(self, provider: str) -> float:
        """Yuan per call minute through provider (0 for a provider without voice)."""
        return self._unit_price.get((provider, Channel.VOICE), 0.0)

    def send_cost(self, provider: str, channel: Channel) -> float:
        """Yuan one accepted code costs: its SMS parts, or a call's first minute."""
        price = self._unit_price.get((provider, channel), 0.0)
        return price * (self.parts(provider) if channel is Channel.SMS else 1)

    def most_expensive(self, providers: Iterable[str], channel: Channel) -> float:
        """The highest send_cost among providers for channel: what a send is reserved at
        against the yuan budget before anyone knows which provider will take it."""
        return max((self.send_cost(name, channel) for name in providers), default=0.0)


def to_units(yuan: float) -> int:
    """Yuan as integer UNITS (rounded to the nearest)."""
    return round(yuan * UNITS)
