"""A provider's delivery-receipt push as the server reads it: Receipt, MalformedReceipt, and
the readers every provider's parser shares (JSON, XML by expat, message ids).

Each provider parses its own pushes in its own module (`parse_ronglian_sms`,
`parse_ronglian_voice` in ronglian.py, `parse_aliyun_sms` in aliyun.py); what a receipt then
changes is services/codes/receipts.py (`ReceiptStore`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from xml.parsers import expat

from services.validation import MalformedJson, parse_json

MESSAGE_ID_RE = re.compile(r"^[A-Za-z0-9^_.:-]{1,64}$")
# <Request><field>text</field></Request> is 2 deep; anything much deeper is not a receipt.
MAX_XML_DEPTH = 8


class MalformedReceipt(ValueError):
    """A push that is not in the provider's format: answered 400, nothing changes."""


@dataclass(frozen=True)
class Receipt:
    """One status report: which provider message, delivered or not, and the provider's code.

    `frees_mobile`: the user certainly got nothing, so the resend guard may be lifted (once
    per code lifetime, ReceiptStore.apply): a failed SMS, a call that could not be placed;
    not a call that rang unanswered.
    """

    provider: str
    message_id: str
    delivered: bool
    reason: str
    frees_mobile: bool
    duration: int | None = None  # a call's seconds, as the provider bills it (voice only)


def valid_message_id(value: object) -> str:
    """The provider's message id, or MalformedReceipt if missing or malformed."""
    if not isinstance(value, str) or not MESSAGE_ID_RE.match(value):
        raise MalformedReceipt("message id missing or malformed")
    return value


def json_document(body: bytes, what: str) -> object:
    """The JSON document in body, or MalformedReceipt(what)."""
    try:
        return parse_json(body)
    except MalformedJson:  # deep nesting and lone surrogates included
        raise MalformedReceipt(what) from None


def _refuse_dtd(*_: object) -> None:
    raise MalformedReceipt("a DTD is not allowed")


def xml_fields(body: bytes) -> dict[str, str]:
    """The text of each child of the <Request> root.

    Read with expat as it streams (no tree, no recursion), refusing what no provider sends: a
    DTD, and so any entity declaration (billion laughs, external entities), before it is
    read; and nesting deeper than MAX_XML_DEPTH.
    """
    fields: dict[str, str] = {}
    depth = 0
    text: list[str] = []

    def start(tag: str, _attributes: object) -> None:
        nonlocal depth
        if depth == 0 and tag != "Request":
            raise MalformedReceipt("root element must be Request")
        depth += 1
        if depth > MAX_XML_DEPTH:
            raise MalformedReceipt("XML nested too deeply")
        if depth == 2:
            text.clear()

    def end(tag: str) -> None:
        nonlocal depth
        if depth == 2:
            fields[tag] = "".join(text).strip()
        depth -= 1

    def characters(data: str) -> None:
        if depth == 2:
            text.append(data)

    parser = expat.ParserCreate()
    parser.StartDoctypeDeclHandler = _refuse_dtd
    parser.EntityDeclHandler = _refuse_dtd  # unreachable without a DTD: belt and braces
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = characters
    try:
        parser.Parse(body, True)
    except MalformedReceipt:
        raise
    except (expat.ExpatError, LookupError, ValueError):
        # ValueError, LookupError: an encoding declared that Python lacks or expat cannot use.
        raise MalformedReceipt("body is not XML") from None
    return fields
