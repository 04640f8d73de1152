"""Was anything half-done in an overload cell? The client's ledger against what the server left.

bench.loadgen --ledger writes each mobile's last outcome over the whole run (warm-up included):
`ok`, `shed` (a 503 was the last answer), `errnoNNNN`, `timeout` (the client gave up), or
`in_flight_at_end` (the run ended before the answer). Once the server has finished what it
had in flight (the sandbox's inbox stops growing), this module compares it with the sandbox's
inbox (the SMS that went out) and with the codes and resend guards left in Redis:

- `ok_without_sms`: answered as sent, but no SMS went out;
- `sms_without_ok`: an SMS went out, but the client's answer was a refusal or a 503;
- `codes_without_sms` / `guards_without_sms`: a code or a resend guard stored for a mobile
  no SMS went to;
- `sms_without_code`: an SMS went out, but no code was kept to check it against.

Their sum is `half_done`. Not counted in it, reported beside it: `sms_to_gone_clients` (an SMS
went out to a client that had given up or was cut off at the end of the run: the server did
the whole send, the client left) and `captcha_lost` (a repeat answered `4002`: the request
used its CAPTCHA before it was refused, so the client must solve a new one).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from bench.stack import Infrastructure
from services.store import keys

GONE = ("timeout", "in_flight_at_end")


def wait_drained(infra: Infrastructure, budget: float = 20.0, still: float = 1.5) -> list[dict]:
    """The sandbox's inbox once it has not grown for `still` seconds (at most `budget`)."""
    assert infra.sandbox is not None
    start = time.monotonic()
    inbox = infra.sandbox.control("GET", "/inbox")
    assert isinstance(inbox, list)
    steady_since = time.monotonic()
    while time.monotonic() - start < budget and time.monotonic() - steady_since < still:
        time.sleep(0.5)
        now = infra.sandbox.control("GET", "/inbox")
        assert isinstance(now, list)
        if len(now) != len(inbox):
            inbox, steady_since = now, time.monotonic()
    return inbox


def stored_mobiles(infra: Infrastructure, key_of, prefix: str) -> set[str]:
    """Mobiles starting with `prefix` whose key (keys.sms_code_key, ...) is in Redis."""
    pattern = key_of(prefix + "*").replace("{", "\\{").replace("}", "\\}")
    found = set()
    for key in infra.redis_client.scan_iter(match=pattern, count=5000):
        found.add(key.split("{", 1)[1].split("}", 1)[0])
    return found


def check(infra: Infrastructure, ledger_path: Path, prefix: str) -> dict:
    """The counts above for the mobiles of one cell (they all start with `prefix`)."""
    ledger: dict[str, str] = json.loads(ledger_path.read_text(encoding="utf-8"))
    inbox = wait_drained(infra)
    sent = {m["to"] for m in inbox if str(m.get("to", "")).startswith(prefix)}
    codes = stored_mobiles(infra, keys.sms_code_key, prefix)
    guards = stored_mobiles(infra, keys.sms_guard_key, prefix)
    ok = {mobile for mobile, outcome in ledger.items() if outcome == "ok"}
    gone = {mobile for mobile, outcome in ledger.items() if outcome in GONE}
    counts = {
        "ok_without_sms": len(ok - sent),
        "sms_without_ok": len(sent - ok - gone - (sent - ledger.keys())),
        "codes_without_sms": len(codes - sent),
        "guards_without_sms": len(guards - sent),
        "sms_without_code": len(sent - codes),
    }
    return {
        **counts,
        "half_done": sum(counts.values()),
        "sms_sent": len(sent),
        "answered_ok": len(ok),
        "sms_to_gone_clients": len(sent & gone) + len(sent - ledger.keys()),
        "captcha_lost": sum(outcome == "errno4002" for outcome in ledger.values()),
    }
