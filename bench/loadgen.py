"""Closed-loop HTTP/1.1 load generator: N keep-alive connections, one request in flight each.

Run by bench.run as its own process (python -m bench.loadgen --help).

Why not wrk: wrk 4.1 drops every latency above its --timeout from the histogram and then
"corrects" the histogram for coordinated omission, so the slow design's p99 would be invented.
This client records the raw time from sending (or connecting, for a new connection) to the
last byte of the answer, closes a connection whose answer took longer than --timeout (as a
browser would give up) and counts that as a timeout. Its own CPU time is reported so the reader
can check it was not the bottleneck (uvloop, raw asyncio protocols, no HTTP library).

Modes:
  sms      GET /api/v1.0/sms_codes/<mobile>?image_code=..&image_code_id=..  one pre-seeded
           (mobile, captcha id, text) tuple per request; ok = HTTP 200 and errno "0"
  captcha  GET /api/v1.0/image_codes/<prefix>-<n>; ok = HTTP 200 and a JPEG body

A 503 (admission control shedding a send) is counted apart from errors, as `shed`, with its
own latency percentiles. With --honor-retry-after the client then does what the SMS widget
does: it waits the answer's Retry-After and sends the same request again (the shed request
used nothing, so its CAPTCHA is still good). With --retry-at-once it sends the same request
again at once, ignoring Retry-After (a bot, an impatient app, a load balancer's retry); then
`p99_to_success_ms` also times a success from its first attempt. Without either, the next
request follows at once. --ledger FILE writes each mobile's last outcome (ok, shed, an error,
timeout, or in flight when the run ended), for bench/halfdone.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import resource
import sys
import time
from urllib.parse import urlsplit

ERRNO_RE = re.compile(rb'"errno"\s*:\s*"?(\d+)')
CONTENT_LENGTH_RE = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)
CONNECTION_CLOSE_RE = re.compile(rb"\r\nconnection:\s*close", re.IGNORECASE)
RETRY_AFTER_RE = re.compile(rb"\r\nretry-after:\s*(\d+)", re.IGNORECASE)
SHED_STATUS = 503


def percentile(sorted_values: list[float], p: float) -> float | None:
    """Nearest-rank percentile of an ascending list (None if empty)."""
    if not sorted_values:
        return None
    rank = max(0, min(len(sorted_values) - 1, round(p / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[rank]


class Stats:
    def __init__(self) -> None:
        self.measuring = False
        self.ok_latencies: list[float] = []
        self.bad_latencies: list[float] = []
        self.shed_latencies: list[float] = []
        self.to_success: list[float] = []  # --retry-at-once: from the first attempt
        self.ledger: dict[str, str] = {}  # mobile -> its last outcome (the whole run)
        self.outcomes: dict[str, int] = {}
        self.timeouts = 0
        self.conn_errors = 0
        self.sent = 0

    def outcome(self, key: str) -> None:
        if self.measuring:
            self.outcomes[key] = self.outcomes.get(key, 0) + 1


class Generator:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        parts = urlsplit(args.url)
        self.host, self.port = parts.hostname, parts.port or 80
        self.path = parts.path or "/"
        self.stats = Stats()
        self.running = True
        self.exhausted = False
        self.counter = 0
        self.tuples: list[tuple[str, str, str]] = []
        if args.mode == "sms":
            with open(args.tuples, encoding="ascii") as fh:
                self.tuples = [tuple(line.split()) for line in fh if line.strip()]
        cookie = f"Cookie: {args.cookie}\r\n" if args.cookie else ""
        cookie += "".join(f"{header}\r\n" for header in args.header)
        self.head_tail = f" HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{cookie}\r\n".encode()
        self.slots: list[Slot] = []

    def next_request(self) -> bytes | None:
        """The next request's bytes, or None when the pre-seeded tuples ran out."""
        n = self.counter
        self.counter += 1
        if self.args.mode == "sms":
            if n >= len(self.tuples):
                self.exhausted = True
                return None
            mobile, cid, text = self.tuples[n]
            path = f"/api/v1.0/sms_codes/{mobile}?image_code={text}&image_code_id={cid}"
        elif self.args.mode == "captcha":
            path = f"/api/v1.0/image_codes/{self.args.prefix}-{n}"
        else:
            path = self.path  # get: the URL's path, every time
        return b"GET " + path.encode() + self.head_tail

    def judge(self, status: int, body: bytes, request: bytes | None = None) -> bool:
        if self.args.mode == "sms":
            match = ERRNO_RE.search(body)
            errno = match.group(1).decode() if match else "none"
            self.note(request, "ok" if status == 200 and errno == "0" else f"errno{errno}")
            if status == 200 and errno == "0":
                return True
            self.stats.outcome(f"http{status}/errno{errno}")
            return False
        if self.args.mode == "get" and status < 500:
            return True  # get: any answer that is not a server error
        if status == 200 and body[:2] == b"\xff\xd8":
            return True
        self.stats.outcome(f"http{status}")
        return False

    def note(self, request: bytes | None, outcome: str) -> None:
        """Keep the last outcome of the request's mobile (sms mode, for --ledger)."""
        if request is not None and getattr(self.args, "ledger", None):
            self.stats.ledger[request[24:35].decode()] = outcome  # GET /api/v1.0/sms_codes/

    async def run(self) -> dict:
        loop = asyncio.get_running_loop()
        self.slots = [Slot(self, loop) for _ in range(self.args.connections)]
        for slot in self.slots:
            slot.connect()
        checker = asyncio.create_task(self.check_timeouts())
        await asyncio.sleep(self.args.warmup)
        self.stats.measuring = True
        usage0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        print("measure-start", flush=True)
        await asyncio.sleep(self.args.duration)
        self.stats.measuring = False
        elapsed = time.perf_counter() - t0
        usage1 = resource.getrusage(resource.RUSAGE_SELF)
        print("measure-end", flush=True)
        self.running = False
        checker.cancel()
        for slot in self.slots:
            if slot.pending:
                self.note(slot.request, "in_flight_at_end")
            slot.close()
        cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
        return self.summary(elapsed, cpu)

    async def check_timeouts(self) -> None:
        while True:
            await asyncio.sleep(0.1)
            deadline = time.perf_counter() - self.args.timeout
            for slot in self.slots:
                if slot.started is not None and slot.started < deadline:
                    if self.stats.measuring:
                        self.stats.timeouts += 1
                    self.note(slot.request, "timeout")
                    slot.retry = False
                    slot.restart()

    def summary(self, elapsed: float, cpu: float) -> dict:
        s = self.stats
        ok = sorted(s.ok_latencies)
        everything = sorted(s.ok_latencies + s.bad_latencies)
        failed = len(s.bad_latencies) + s.timeouts + s.conn_errors
        shed = sorted(s.shed_latencies)
        answered = len(ok) + len(shed) + failed
        ms = lambda v: None if v is None else round(v * 1000, 2)  # noqa: E731
        return {
            "mode": self.args.mode,
            "connections": self.args.connections,
            "duration_s": round(elapsed, 3),
            "ok": len(ok),
            "ok_per_s": round(len(ok) / elapsed, 1),
            "completed_per_s": round(len(everything) / elapsed, 1),
            "errors": failed,
            "error_answers": len(s.bad_latencies),
            "timeouts": s.timeouts,
            "connection_errors": s.conn_errors,
            "outcomes": dict(sorted(s.outcomes.items(), key=lambda kv: -kv[1])),
            "p50_ms": ms(percentile(ok, 50)),
            "p90_ms": ms(percentile(ok, 90)),
            "p99_ms": ms(percentile(ok, 99)),
            "max_ms": ms(ok[-1] if ok else None),
            "p99_all_ms": ms(percentile(everything, 99)),
            "p99_to_success_ms": ms(percentile(sorted(s.to_success), 99)),
            "shed": len(shed),
            "shed_per_s": round(len(shed) / elapsed, 1),
            "shed_share": round(len(shed) / answered, 4) if answered else None,
            "shed_p50_ms": ms(percentile(shed, 50)),
            "shed_p99_ms": ms(percentile(shed, 99)),
            "honor_retry_after": getattr(self.args, "honor_retry_after", False),
            "retry_at_once": getattr(self.args, "retry_at_once", False),
            "timeout_s": self.args.timeout,
            "exhausted": self.exhausted,
            "loadgen_cpu_s": round(cpu, 3),
            "loadgen_cpu_pct": round(100 * cpu / elapsed, 1),
        }


class Slot:
    """One simulated client: a connection with at most one request in flight."""

    def __init__(self, gen: Generator, loop: asyncio.AbstractEventLoop) -> None:
        self.gen = gen
        self.loop = loop
        self.proto: Conn | None = None
        self.started: float | None = None  # when the pending request began (None: idle)
        self.request: bytes | None = None  # the request in flight (sent again after a 503)
        self.retry = False  # the next send repeats self.request (it was shed)
        self.first: float | None = None  # when self.request was first sent
        self.pending = False  # self.request is written and not answered yet

    def connect(self) -> None:
        if not self.gen.running:
            return
        self.started = time.perf_counter()  # a new connection's set-up is part of the wait
        proto = Conn(self)
        self.proto = proto
        task = self.loop.create_task(
            self.loop.create_connection(lambda: proto, self.gen.host, self.gen.port)
        )
        task.add_done_callback(self._connected)

    def _connected(self, task: asyncio.Task) -> None:
        if task.cancelled() or task.exception() is not None:
            if self.gen.stats.measuring:
                self.gen.stats.conn_errors += 1
            self.started = None
            if self.gen.running:
                self.loop.call_later(0.05, self.connect)

    def send(self, fresh_connection: bool) -> None:
        if not self.gen.running or self.proto is None or self.proto.transport is None:
            return
        request = self.request if self.retry else self.gen.next_request()
        repeat, self.retry = self.retry, False
        if request is None:
            self.started = None
            return
        self.request = request
        if not fresh_connection:
            self.started = time.perf_counter()
        if not repeat:
            self.first = self.started
        if self.gen.stats.measuring:
            self.gen.stats.sent += 1
        self.pending = True
        self.proto.transport.write(request)

    def finished(self, status: int, body: bytes, keep_alive: bool, head: bytes = b"") -> None:
        latency = time.perf_counter() - (self.started or time.perf_counter())
        self.started, self.pending = None, False
        gen = self.gen
        if status == SHED_STATUS:
            gen.note(self.request, "shed")
            if gen.stats.measuring:
                gen.stats.shed_latencies.append(latency)
            match = RETRY_AFTER_RE.search(head)
            if getattr(gen.args, "honor_retry_after", False) and match and keep_alive:
                self.retry = True
                self.loop.call_later(int(match.group(1)), self.send, False)
                return
            self.retry = getattr(gen.args, "retry_at_once", False)
        else:
            ok = gen.judge(status, body, self.request)
            if gen.stats.measuring:
                (gen.stats.ok_latencies if ok else gen.stats.bad_latencies).append(latency)
                if ok and self.first is not None:
                    gen.stats.to_success.append(time.perf_counter() - self.first)
        if keep_alive:
            self.send(False)
        else:
            self.restart()

    def failed(self) -> None:
        """The connection died with a request in flight."""
        if self.started is not None and self.gen.stats.measuring:
            self.gen.stats.conn_errors += 1
        self.started = None
        self.gen.stats.outcome("connection lost")
        if self.gen.running:
            self.loop.call_later(0.01, self.connect)

    def restart(self) -> None:
        proto, self.proto = self.proto, None
        self.started = None
        if proto is not None:
            proto.detach()
        self.connect()

    def close(self) -> None:
        proto, self.proto = self.proto, None
        if proto is not None:
            proto.detach()


class Conn(asyncio.Protocol):
    def __init__(self, slot: Slot) -> None:
        self.slot: Slot | None = slot
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()

    def detach(self) -> None:
        self.slot = None
        if self.transport is not None:
            self.transport.abort()

    def connection_made(self, transport) -> None:
        self.transport = transport
        if self.slot is not None:
            self.slot.send(True)

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        while self.slot is not None:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[: end + 2])
            match = CONTENT_LENGTH_RE.search(head)
            if match is None:
                return  # close-delimited body: finished in connection_lost
            total = end + 4 + int(match.group(1))
            if len(buf) < total:
                return
            body = bytes(buf[end + 4 : total])
            del buf[:total]
            status = int(head[9:12])
            keep_alive = CONNECTION_CLOSE_RE.search(head) is None
            self.slot.finished(status, body, keep_alive, head)
            if not keep_alive:
                return

    def connection_lost(self, exc) -> None:
        slot, self.slot = self.slot, None
        if slot is None or slot.proto is not self:
            return
        end = self.buf.find(b"\r\n\r\n")
        if end >= 0 and slot.started is not None:
            head = bytes(self.buf[: end + 2])
            slot.proto = None
            slot.finished(int(head[9:12]), bytes(self.buf[end + 4 :]), False)
            return
        if slot.started is None:
            slot.proto = None
            slot.connect()  # idle keep-alive connection closed by the server
            return
        slot.proto = None
        slot.failed()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--mode", choices=("sms", "captcha", "get"), required=True)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--warmup", type=float, default=3)
    parser.add_argument("--duration", type=float, default=12)
    parser.add_argument("--timeout", type=float, default=5)
    parser.add_argument("--tuples", help="sms mode: file of 'mobile captcha_id text' lines")
    parser.add_argument("--prefix", default="bench", help="captcha mode: id prefix")
    parser.add_argument("--cookie", default="", help="Cookie header value sent with each request")
    parser.add_argument("--header", action="append", default=[], help="'Name: value', each request")
    parser.add_argument(
        "--honor-retry-after",
        action="store_true",
        help="after a 503, wait its Retry-After and send the same request again",
    )
    parser.add_argument(
        "--retry-at-once",
        action="store_true",
        help="after a 503, send the same request again at once (ignore Retry-After)",
    )
    parser.add_argument("--ledger", help="sms mode: write each mobile's last outcome here")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # still correct, only hungrier
        runner = asyncio.run
    generator = Generator(args)
    result = runner(generator.run())
    with open(args.out, "w", encoding="utf-8") as fh:
        json.dump(result, fh, indent=1)
    if args.ledger:
        with open(args.ledger, "w", encoding="utf-8") as fh:
            json.dump(generator.stats.ledger, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
