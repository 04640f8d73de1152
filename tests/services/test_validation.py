"""parse_json: the one parser of every JSON body a client or a provider sends us."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.config import load_config
from services.providers.base import Outcome
from services.providers.ronglian import RonglianClient, RonglianError
from services.validation import MalformedJson, parse_json

ROOT = Path(__file__).resolve().parents[2]
DEEP = b"[" * 5000 + b"]" * 5000


@pytest.mark.parametrize(
    "body",
    [
        DEEP,
        b'{"a": ' + b"{" * 100_000,
        b'{"a": "\\ud800"}',
        b'["\\udfffx"]',
        b"\xff\xfe{}",
        b"",
        b"{'a': 1}",
    ],
    ids=["deep", "deep-unclosed", "high-surrogate", "low-surrogate", "not-utf8", "empty", "quotes"],
)
def test_unparseable_bodies_are_malformed_json(body):
    with pytest.raises(MalformedJson):
        parse_json(body)


def test_ordinary_json_parses():
    assert parse_json(b'{"mobile": "13800000000", "n": [1, 2.5, null, "\\u4e2d"]}') == {
        "mobile": "13800000000",
        "n": [1, 2.5, None, "中"],
    }
    assert parse_json(b"[" * 100 + b"]" * 100)  # nesting a real body could have


def test_a_deep_provider_answer_is_an_unknown_outcome():
    """An answer we cannot read after the request went out: maybe sent, so kept, not refunded
    (before, the RecursionError escaped and the send was given back as certainly not sent)."""
    config = load_config(ROOT / "config.yml", environ={}).ronglian
    client = RonglianClient(None, config, None)  # type: ignore[arg-type]  # _parse needs neither
    with pytest.raises(RonglianError) as refused:
        client._parse(b'{"statusCode": ' + DEEP + b"}", "138****0000")
    assert refused.value.outcome is Outcome.UNKNOWN
