"""Input rules shared by every API family (mobiles, and their masking in logs:
services/accounts/mobiles.py)."""

import json
import re
from typing import TypeGuard

from services.errors import Ret, ServiceError

CAPTCHA_ID_RE = re.compile(r"[A-Za-z0-9-]{1,64}")
MAX_CAPTCHA_ANSWER = 16


def is_captcha_id(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and CAPTCHA_ID_RE.fullmatch(value) is not None


def required_text(*values: object) -> tuple[str, ...]:
    """The values if each is non-empty text, else PARAMERR (a form or JSON body left some out)."""
    texts = tuple(value for value in values if isinstance(value, str) and value)
    if len(texts) != len(values):
        raise ServiceError(Ret.PARAMERR, "参数不完整")
    return texts


class MalformedJson(ValueError):
    """A body that is not JSON a handler can use (see parse_json)."""


def parse_json(body: bytes | str) -> object:
    """The JSON document in `body`, or MalformedJson: the one parser of every JSON body a
    client or a provider sends us (API requests, receipt pushes, provider answers).

    Refused as malformed, never raised as anything else: text that is not JSON or not UTF-8;
    nesting deep enough to exhaust the parser's stack (thousands of brackets: a
    RecursionError, which would otherwise be a 500); and a lone surrogate ("\\ud800"), which
    JSON can spell but no UTF-8 text holds, so it would fail later, deep in a hash, a Redis
    write or a comparison. Each caller turns MalformedJson into its family's clear error.
    """
    try:
        document = json.loads(body)
        json.dumps(document, ensure_ascii=False).encode()
    except (ValueError, UnicodeError, RecursionError):
        raise MalformedJson("not JSON, too deeply nested, or holding a lone surrogate") from None
    return document
