"""What the soak reads after the load (the server's /metrics, its log, the sandbox's inbox)
and its criteria: no error, every OK answer is one message in the inbox."""

from __future__ import annotations

import re
import urllib.request

METRIC_RE = re.compile(r"^(\w+)\{([^}]*)\}\s+([0-9.eE+-]+)$")
# The mobiles of the soak's tuples: Infrastructure.seed_captchas for cell 0.
SEEDED_PREFIX = "1300"


def fetch(url: str, timeout: float = 30) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


def server_counters(port: int) -> dict:
    """GET /metrics (all workers summed): SMS sends by status, sms_codes answers by errno."""
    text = fetch(f"http://127.0.0.1:{port}/metrics").decode()
    sends: dict[str, float] = {}
    answers: dict[str, float] = {}
    for line in text.splitlines():
        match = METRIC_RE.match(line.strip())
        if not match:
            continue
        name, labels, value = match.groups()
        label = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        if name == "smsreg_sms_sends_total":
            sends[label.get("status_code", "?")] = float(value)
        elif name == "smsreg_requests_total" and label.get("route") == "sms_codes":
            errno = label.get("errno", "?")
            answers[errno] = answers.get(errno, 0) + float(value)
    return {
        "sms_sends_by_status": {k: int(v) for k, v in sends.items() if v},
        "sms_codes_answers_by_errno": {k: int(v) for k, v in answers.items() if v},
    }


def log_problems(log_text: str) -> list[str]:
    """Anything the server logged above INFO (DBERR's cause is a WARNING), and crashes;
    not the probe's JSON 404s, which are logged at WARNING too."""
    return [
        line
        for line in log_text.splitlines()
        if re.search(r" (WARNING|ERROR|CRITICAL) |Traceback|exited", line)
        and "404 GET JsonNotFoundHandler" not in line
    ]


def inbox_summary(inbox: list[dict]) -> dict:
    mobiles = [m["to"] for m in inbox]
    return {
        "messages": len(inbox),
        "distinct_mobiles": len(set(mobiles)),
        "all_from_seeded_tuples": all(m.startswith(SEEDED_PREFIX) for m in mobiles),
    }


def criteria(load: dict, inbox: dict, counters: dict, memory: dict, inbox_limit: int) -> dict:
    """errors, accounting and memory, each with pass and what it was decided on."""
    errors_ok = (
        load["errors"] == 0
        and not load["exhausted"]
        and load["in_flight_left"] == 0
        and load["sent"] == load["ok"]
    )
    accounting_ok = (
        load["ok"] == inbox["messages"]
        and inbox["distinct_mobiles"] == inbox["messages"]
        and inbox["messages"] < inbox_limit
    )
    return {
        "errors": {
            "pass": errors_ok,
            "errors": load["errors"],
            "error_answers": load["error_answers"],
            "timeouts": load["timeouts"],
            "connection_errors": load["connection_errors"],
            "outcomes": load["outcomes"],
            "sent": load["sent"],
            "answered_ok": load["ok"],
            "exhausted": load["exhausted"],
        },
        "accounting": {
            "pass": accounting_ok,
            "ok_answers": load["ok"],
            "inbox_messages": inbox["messages"],
            "distinct_mobiles_in_inbox": inbox["distinct_mobiles"],
            "server_sends_000000": counters["sms_sends_by_status"].get("000000"),
        },
        "memory": {"pass": memory["pass"]},
    }
