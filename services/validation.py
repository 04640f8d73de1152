"""Input rules shared by every API family (mobiles: services/accounts/mobiles.py)."""

import re
from typing import TypeGuard

from services.errors import Ret, ServiceError

CAPTCHA_ID_RE = re.compile(r"[A-Za-z0-9-]{1,64}")
MAX_CAPTCHA_ANSWER = 16


def is_captcha_id(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and CAPTCHA_ID_RE.fullmatch(value) is not None


def mask_mobile(mobile: str) -> str:
    """138****0000: enough for an operator to correlate, not enough to identify."""
    if len(mobile) == 11 and mobile.isdigit():
        return f"{mobile[:3]}****{mobile[-4:]}"
    return "***"


def required_text(*values: object) -> tuple[str, ...]:
    """The values if each is non-empty text, else PARAMERR (a form or JSON body left some out)."""
    texts = tuple(value for value in values if isinstance(value, str) and value)
    if len(texts) != len(values):
        raise ServiceError(Ret.PARAMERR, "参数不完整")
    return texts
