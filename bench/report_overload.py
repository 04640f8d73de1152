"""The overload part of docs/PERFORMANCE.md's generated section: tables and targets.

overload  (O) admission control as shipped and (Q) none, clients that wait a 503's Retry-After
retry     (O) against clients that repeat a 503 at once, ignoring Retry-After (issue 26,
          goal 1): goodput against the same server's best throughput with admission out of
          reach ((a) and (Q) at 100 ms upstream in the same run), accepted p99, half-done sends
"""

from __future__ import annotations

from bench.systems import NAMES

UPSTREAM_MS = 100
GOODPUT_SHARE = 0.9  # issue 26 goal 1: successful sends/s >= 90 % of the best throughput
REFERENCE = ("a", "Q")  # our server, one process, admission out of reach


def check(target: str, value: float | None, passed: bool, digits: int | None = None) -> dict:
    return {"target": target, "value": round(value, digits) if digits else value, "pass": passed}


def fmt(v, digits=0):
    if v is None:
        return "–"
    return f"{v:,.{digits}f}" if isinstance(v, float | int) else str(v)


def heading(title: str, columns: str, align: str) -> list[str]:
    return ["", f"### {title}", "", columns, align]


def best_reference(cells: list[dict]) -> dict | None:
    """The cell with the most successful sends/s of our server with admission out of reach."""
    candidates = [
        c
        for c in cells
        if c["system"] in REFERENCE
        and c["section"] in ("sms", "overload")
        and c["latency_ms"] == UPSTREAM_MS
    ]
    return max(candidates, key=lambda c: c["ok_per_s"], default=None)


def shed_delay_ms() -> float:
    from services.config import AdmissionConfig

    return 1000 * getattr(AdmissionConfig(), "shed_delay", 0.0)


def overload_targets(cells: list[dict]) -> list[dict]:
    """At the most connections measured (5x a normal 200): (O) keeps accepted sends fast."""
    overload = [c for c in cells if c["section"] == "overload" and c["system"] == "O"]
    if not overload:
        return []
    top = max(overload, key=lambda c: c["connections"])
    where = f"overload {top['connections']} conns, 100 ms upstream:"
    p99, shed99 = top["p99_ms"], top.get("shed_p99_ms")
    checks = [
        check(f"{where} accepted p99 <= 300 ms (3x upstream)", p99, p99 is not None and p99 <= 300),
        check(f"{where} no client timeouts", top["timeouts"], top["timeouts"] == 0),
    ]
    if shed99 is not None:
        # Issue 15 asked for a fast 503; since issue 26 a shed is held admission.shed_delay on
        # purpose (a timer, no CPU), so the check allows that delay plus 100 ms.
        limit = shed_delay_ms() + 100
        checks.append(
            check(f"{where} shed 503s p99 <= shed_delay + 100 ms", shed99, shed99 <= limit)
        )
    return checks


def retry_targets(cells: list[dict]) -> list[dict]:
    """Issue 26 goal 1 at every retry cell of (O): goodput, accepted p99, nothing half-done."""
    best = best_reference(cells)
    checks = []
    for c in sorted(_retry_cells(cells), key=lambda c: c["connections"]):
        where = f"goal 1, {c['connections']} conns retrying at once, 100 ms upstream:"
        if best and best["ok_per_s"]:
            share = c["ok_per_s"] / best["ok_per_s"]
            text = f"{where} sends/s >= {GOODPUT_SHARE:.0%} of best without admission"
            checks.append(check(text, share, share >= GOODPUT_SHARE, 2))
        p99 = c["p99_ms"]
        limit = 3 * UPSTREAM_MS
        checks.append(
            check(f"{where} accepted p99 <= {limit} ms", p99, p99 is not None and p99 <= limit)
        )
        if (half := c.get("half_done")) is not None:
            checks.append(
                check(f"{where} nothing half-done", half["half_done"], not half["half_done"])
            )
    return checks


def _retry_cells(cells: list[dict]) -> list[dict]:
    return [c for c in cells if c["section"] == "retry" and c["system"] == "O"]


def overload_tables(cells: list[dict]) -> list[str]:
    return _overload_table([c for c in cells if c["section"] == "overload"]) + _retry_table(cells)


def _overload_table(cells: list[dict]) -> list[str]:
    if not cells:
        return []
    lines = heading(
        "Overload (SMS flow, 100 ms upstream; clients wait a 503's Retry-After, then repeat)",
        "| conns | system | accepted req/s | accepted p50 / p99 ms | shed share "
        "| shed 503 p50 / p99 ms | client timeouts | other errors | half-done | lag p99 ms "
        "| server CPU % |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    )
    for c in sorted(cells, key=lambda c: (c["connections"], c["system"])):
        share = c.get("shed_share")
        lines.append(
            f"| {c['connections']} | {NAMES.get(c['system'], c['system'])} "
            f"| **{fmt(c['ok_per_s'], 1)}** | {fmt(c['p50_ms'], 1)} / **{fmt(c['p99_ms'], 1)}** "
            f"| {'–' if share is None else f'{100 * share:.1f} %'} "
            f"| {fmt(c.get('shed_p50_ms'), 1)} / {fmt(c.get('shed_p99_ms'), 1)} "
            f"| {c['timeouts']} | {c['errors'] - c['timeouts']} "
            f"| {fmt((c.get('half_done') or {}).get('half_done'))} "
            f"| {fmt(c['lag']['p99_ms'], 1)} | {fmt(c['cpu_pct']['server'])} |"
        )
    return lines


def _retry_table(cells: list[dict]) -> list[str]:
    retry = sorted(_retry_cells(cells), key=lambda c: c["connections"])
    if not retry:
        return []
    best = best_reference(cells)
    lines = heading(
        "No congestion collapse (issue 26 goal 1): clients that repeat a 503 at once",
        "| conns | (O) sends/s | of best | accepted p50 / p99 ms | p99 from first try ms "
        "| 503/s | 503 p50 ms | CAPTCHAs lost | timeouts | other errors | half-done "
        "| SMS to gone clients | (Q) sends/s, p99 ms | server CPU % |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    )
    for c in retry:
        half = c.get("half_done") or {}
        q = next(
            (
                x
                for x in cells
                if (x["section"], x["system"], x["connections"])
                == ("overload", "Q", c["connections"])
            ),
            None,
        )
        share = c["ok_per_s"] / best["ok_per_s"] if best and best["ok_per_s"] else None
        other = c["errors"] - c["timeouts"]
        q_text = "–" if q is None else f"{fmt(q['ok_per_s'], 1)}, {fmt(q['p99_ms'])}"
        lines.append(
            f"| {c['connections']} | **{fmt(c['ok_per_s'], 1)}** "
            f"| **{'–' if share is None else f'{100 * share:.0f} %'}** "
            f"| {fmt(c['p50_ms'], 1)} / **{fmt(c['p99_ms'], 1)}** "
            f"| {fmt(c.get('p99_to_success_ms'), 1)} | {fmt(c.get('shed_per_s'), 1)} "
            f"| {fmt(c.get('shed_p50_ms'), 1)} | {fmt(half.get('captcha_lost'))} "
            f"| {c['timeouts']} | {other} | **{fmt(half.get('half_done'))}** "
            f"| {fmt(half.get('sms_to_gone_clients'))} "
            f"| {q_text} "
            f"| {fmt(c['cpu_pct']['server'])} |"
        )
    if best:
        lines += [
            "",
            f"`of best`: against the most successful sends/s of the same server with admission "
            f"out of reach in this run, {fmt(best['ok_per_s'], 1)}/s "
            f"({NAMES.get(best['system'], best['system'])}, {best['connections']} connections). "
            "Half-done (bench/halfdone.py, every mobile of the cell, warm-up included, once the "
            "server had finished): a success without an SMS, an SMS answered with a refusal or "
            "a 503, a code or resend guard without an SMS, an SMS without a code. `SMS to gone "
            "clients`: sends completed for a client that had timed out or was cut off when the "
            "cell ended. `CAPTCHAs lost`: repeats answered 4002 (the request had used its "
            "CAPTCHA before it was refused). `p99 from first try`: a success timed from the "
            "first attempt of its request, the repeats included.",
        ]
    return lines
