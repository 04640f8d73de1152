"""Input rules shared by every API family (mobiles: services/mobiles.py)."""

import re

CAPTCHA_ID_RE = re.compile(r"[A-Za-z0-9-]{1,64}")
MAX_CAPTCHA_ANSWER = 16


def is_captcha_id(value: object) -> bool:
    return isinstance(value, str) and CAPTCHA_ID_RE.fullmatch(value) is not None


def mask_mobile(mobile: str) -> str:
    """138****0000: enough for an operator to correlate, not enough to identify."""
    if len(mobile) == 11 and mobile.isdigit():
        return f"{mobile[:3]}****{mobile[-4:]}"
    return "***"
