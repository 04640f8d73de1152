"""Event-loop lag probe: a trivial request every --interval seconds on one connection.

  python -m bench.probe --url http://127.0.0.1:P/api/v1.0/nothing --warmup 3 --duration 12 \
      --out PROBE.json

Blocking sockets and no event loop of its own, so the probe adds no lag of its own; it sends
the next request --interval after the previous one was sent (or at once if that answer came
later). The p99 of these answers while a flood runs is the server's event-loop lag as a client
feels it: any CPU work done on the loop (rendering, parsing, logging) delays them.
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import sys
import time
from urllib.parse import urlsplit

from bench.loadgen import percentile

CONTENT_LENGTH_RE = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)
CONNECTION_CLOSE_RE = re.compile(rb"\r\nconnection:\s*close", re.IGNORECASE)


def one_request(sock_holder: list, host: str, port: int, request: bytes, timeout: float) -> None:
    """Send request on the held connection (opening one if needed) and read the whole answer."""
    if not sock_holder:
        sock_holder.append(socket.create_connection((host, port), timeout=timeout))
    sock = sock_holder[0]
    sock.settimeout(timeout)
    sock.sendall(request)
    buf = b""
    while True:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            head = buf[: end + 2]
            match = CONTENT_LENGTH_RE.search(head)
            if match and len(buf) >= end + 4 + int(match.group(1)):
                if CONNECTION_CLOSE_RE.search(head):
                    sock.close()
                    sock_holder.clear()
                return
        chunk = sock.recv(65536)
        if not chunk:
            sock.close()
            sock_holder.clear()
            if end >= 0:
                return  # close-delimited body
            raise ConnectionError("closed before an answer")
        buf += chunk


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--warmup", type=float, default=3)
    parser.add_argument("--duration", type=float, default=12)
    parser.add_argument("--interval", type=float, default=0.02)
    parser.add_argument("--timeout", type=float, default=10)
    parser.add_argument("--cookie", default="")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    parts = urlsplit(args.url)
    host, port = parts.hostname, parts.port or 80
    cookie = f"Cookie: {args.cookie}\r\n" if args.cookie else ""
    request = f"GET {parts.path} HTTP/1.1\r\nHost: {host}:{port}\r\n{cookie}\r\n".encode()
    holder: list = []
    latencies: list[float] = []
    errors = 0
    start = time.perf_counter()
    measure_from = start + args.warmup
    stop_at = measure_from + args.duration
    while True:
        t0 = time.perf_counter()
        if t0 >= stop_at:
            break
        try:
            one_request(holder, host, port, request, args.timeout)
            latency = time.perf_counter() - t0
            if t0 >= measure_from:
                latencies.append(latency)
        except OSError:
            if holder:
                holder.pop().close()
            if t0 >= measure_from:
                errors += 1
        pause = args.interval - (time.perf_counter() - t0)
        if pause > 0:
            time.sleep(pause)
    latencies.sort()
    ms = lambda v: None if v is None else round(v * 1000, 2)  # noqa: E731
    result = {
        "count": len(latencies),
        "errors": errors,
        "p50_ms": ms(percentile(latencies, 50)),
        "p99_ms": ms(percentile(latencies, 99)),
        "max_ms": ms(latencies[-1] if latencies else None),
    }
    with open(args.out, "w", encoding="utf-8") as fh:
        json.dump(result, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
