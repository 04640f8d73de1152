"""The Ronglian sandbox's frequency rules (docs/RONGLIAN_PROTOCOL.md), per number and day."""

from __future__ import annotations

from datetime import datetime

from sandbox.ronglian_protocol import CST, SandboxSettings


class RateLimiter:
    """Per-number frequency rules from the "模板短信规则" page, keyed by CST calendar day."""

    # Caps each table so a benchmark spraying distinct numbers cannot exhaust memory;
    # evicting the oldest entries only makes the simulator more lenient.
    MAX_KEYS = 200_000

    def __init__(self, settings: SandboxSettings) -> None:
        self.settings = settings
        self.clear()

    def clear(self) -> None:
        """Forget all counters."""
        self._day = ""
        self._last_sent: dict[tuple[str, str], float] = {}
        self._per_template: dict[tuple[str, str], int] = {}
        self._per_number: dict[str, int] = {}

    def check(self, template_id: str, numbers: list[str], now: float) -> str | None:
        """Return the error code if sending now would break a limit, else None."""
        s = self.settings
        if not s.rate_limits:
            return None
        self._roll_day(now)
        verification = s.templates[template_id].kind == "verification"
        for number in numbers:
            key = (template_id, number)
            if verification:
                last = self._last_sent.get(key)
                if last is not None and now - last < s.same_number_interval:
                    return "160038"
                if self._per_template.get(key, 0) >= s.daily_per_template:
                    return "160040"
                if self._per_number.get(number, 0) >= s.daily_per_number:
                    return "160040"
            elif self._per_template.get(key, 0) >= s.daily_per_template_notification:
                return "160041"
        return None

    def record(self, template_id: str, numbers: list[str], now: float) -> None:
        """Count an accepted send (call right after a successful check, with no await between)."""
        if not self.settings.rate_limits:
            return
        verification = self.settings.templates[template_id].kind == "verification"
        for number in numbers:
            key = (template_id, number)
            self._last_sent[key] = now
            self._per_template[key] = self._per_template.get(key, 0) + 1
            if verification:  # the 8-per-day cap is a rule for verification templates
                self._per_number[number] = self._per_number.get(number, 0) + 1
        for table in (self._last_sent, self._per_template, self._per_number):
            while len(table) > self.MAX_KEYS:
                del table[next(iter(table))]

    def _roll_day(self, now: float) -> None:
        """Reset daily counters when the CST date changes."""
        day = datetime.fromtimestamp(now, CST).strftime("%Y%m%d")
        if day != self._day:
            self._day = day
            self._per_template.clear()
            self._per_number.clear()
