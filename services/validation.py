"""Input rules shared by every API family."""

import re

# [0-9], not \d: \d also matches non-ASCII digits such as "١".
MOBILE_RE = re.compile(r"1[3-9][0-9]{9}")
CAPTCHA_ID_RE = re.compile(r"[A-Za-z0-9-]{1,64}")
MAX_CAPTCHA_ANSWER = 16


def is_mobile(value: object) -> bool:
    return isinstance(value, str) and MOBILE_RE.fullmatch(value) is not None


def is_captcha_id(value: object) -> bool:
    return isinstance(value, str) and CAPTCHA_ID_RE.fullmatch(value) is not None


def mask_mobile(mobile: str) -> str:
    """138****0000: enough for an operator to correlate, not enough to identify."""
    if len(mobile) == 11 and mobile.isdigit():
        return f"{mobile[:3]}****{mobile[-4:]}"
    return "***"
