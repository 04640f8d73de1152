"""One canonical form for every mobile number a route accepts: 11 digits, a valid CN mobile.

People and front-ends write the same number many ways (`+86 138 1234 5678`, `0086…`, `86…`,
dashes, full-width digits). Stored or counted apart, those spellings would give one person two
accounts, or a pumper a fresh SMS quota per spelling. libphonenumber (the `phonenumbers`
package) knows China's numbering plan, so it, not a hand-written regex, decides what is a
mobile: unassigned blocks and IoT/data-only ranges (140, 144, 174 …) are not.

Every mobile helper is here: `canonical_mobile` (the form, or None), `require_mobile` (the
form, or the one PARAMERR every route answers) and `mask_mobile` (what logs may show).
"""

from __future__ import annotations

import re
import unicodedata

import phonenumbers

from services.errors import Ret, ServiceError

# What a person may type around the digits, after NFKC has turned full-width characters
# (１３８, ＋, －, full-width space) into ASCII. Anything else — letters, which libphonenumber
# would read as a keypad (1-800-FLOWERS), extensions, other scripts' digits — is refused.
SPELLING_RE = re.compile(r"[0-9+\-() .]{11,24}")
MOBILE_TYPES = frozenset({phonenumbers.PhoneNumberType.MOBILE})
CHINA = 86


def canonical_mobile(value: object) -> str | None:
    """The 11-digit national form of a valid mainland-China mobile number, or None."""
    if not isinstance(value, str) or len(value) > 40:
        return None
    spelled = " ".join(unicodedata.normalize("NFKC", value).split())  # any whitespace → " "
    if not SPELLING_RE.fullmatch(spelled):
        return None
    try:
        number = phonenumbers.parse(spelled, "CN")
    except phonenumbers.NumberParseException:
        return None
    if number.country_code != CHINA or number.extension or number.italian_leading_zero:
        return None
    if phonenumbers.number_type(number) not in MOBILE_TYPES:
        return None  # also catches numbers libphonenumber does not consider valid at all
    if not phonenumbers.is_valid_number_for_region(number, "CN"):
        return None
    national = str(number.national_number)
    return national if len(national) == 11 else None


def require_mobile(value: object) -> str:
    """The canonical form of a mobile the user typed, or PARAMERR 手机号格式错误 on `mobile`."""
    mobile = canonical_mobile(value)
    if mobile is None:
        raise ServiceError(Ret.PARAMERR, "手机号格式错误", field="mobile")
    return mobile


def mask_mobile(mobile: str) -> str:
    """138****0000: enough for an operator to correlate, not enough to identify."""
    if len(mobile) == 11 and mobile.isdigit():
        return f"{mobile[:3]}****{mobile[-4:]}"
    return "***"
