"""The soak's load generator: bench.loadgen counting every answer, not a measured window.

Runs as its own process (`python -m bench.soak --child-loadgen SPEC`): bench.loadgen's own
run() measures a window and then aborts the requests still in flight, whose SMS the sandbox
may still accept. This one stops sending after --duration and waits for every answer in flight.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time
from pathlib import Path

from bench.loadgen import Generator, Slot, percentile


class SoakSlot(Slot):
    """bench.loadgen's Slot; a connection made after sending stopped has nothing in flight."""

    def send(self, fresh_connection: bool) -> None:
        if not self.gen.running:
            self.started = None
            return
        super().send(fresh_connection)


class SoakGenerator(Generator):
    """bench.loadgen's Generator, counting every answer instead of a measured window.

    Counts from the first request, stops sending after --duration, then waits for the answers
    still in flight (check_timeouts bounds the wait: an answer older than --timeout is counted
    as a timeout). Marks the end of --warmup for steady-state latency and throughput and
    records a per-second timeline of the counters.
    """

    def tick(self, t0: float) -> dict:
        s = self.stats
        return {
            "t": round(time.perf_counter() - t0, 3),
            "ok": len(s.ok_latencies),
            "error_answers": len(s.bad_latencies),
            "timeouts": s.timeouts,
            "connection_errors": s.conn_errors,
        }

    async def ticker(self, t0: float, timeline: list[dict]) -> None:
        while True:
            await asyncio.sleep(1.0)
            timeline.append(self.tick(t0))

    async def run(self) -> dict:
        loop = asyncio.get_running_loop()
        args, stats = self.args, self.stats
        stats.measuring = True
        usage0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        print("start", flush=True)
        self.slots = [SoakSlot(self, loop) for _ in range(args.connections)]
        for slot in self.slots:
            slot.connect()
        checker = asyncio.create_task(self.check_timeouts())
        timeline: list[dict] = []
        ticker = asyncio.create_task(self.ticker(t0, timeline))
        await asyncio.sleep(args.warmup)
        warm = (time.perf_counter(), len(stats.ok_latencies))
        print("warm", flush=True)
        await asyncio.sleep(max(0.0, args.duration - args.warmup))
        self.running = False  # no new request from here on; the ones in flight finish
        stop = (time.perf_counter(), len(stats.ok_latencies))
        print("sending-stopped", flush=True)
        in_flight_left = await self.drain(stop[0])
        end_t = time.perf_counter()
        stats.measuring = False
        usage1 = resource.getrusage(resource.RUSAGE_SELF)
        ticker.cancel()
        checker.cancel()
        timeline.append(self.tick(t0))
        for slot in self.slots:
            slot.close()
        cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
        result = self.summary(end_t - t0, cpu)
        result.update(self.soak_summary((t0, warm, stop, end_t), in_flight_left, timeline))
        return result

    async def drain(self, stop_t: float) -> int:
        """Wait for the answers in flight; how many are still missing (0 unless it hung)."""
        while any(slot.started is not None for slot in self.slots):
            if time.perf_counter() - stop_t > self.args.timeout + 2:
                break  # cannot happen while check_timeouts runs; never hang the soak
            await asyncio.sleep(0.01)
        return sum(slot.started is not None for slot in self.slots)

    def soak_summary(self, times: tuple, in_flight_left: int, timeline: list[dict]) -> dict:
        """What the soak adds to bench.loadgen's summary: the steady state, the drain, ticks."""
        t0, (warm_t, warm_ok), (stop_t, stop_ok), end_t = times
        steady = sorted(self.stats.ok_latencies[warm_ok:stop_ok])
        ms = lambda v: None if v is None else round(v * 1000, 2)  # noqa: E731
        return {
            "sent": self.stats.sent,
            "tuples_used": min(self.counter, len(self.tuples)),
            "tuples_seeded": len(self.tuples),
            "sending_s": round(stop_t - t0, 3),
            "drain_s": round(end_t - stop_t, 3),
            "in_flight_left": in_flight_left,
            "warmup_s": self.args.warmup,
            "steady": {
                "window_s": round(stop_t - warm_t, 3),
                "ok": stop_ok - warm_ok,
                "ok_per_s": round((stop_ok - warm_ok) / (stop_t - warm_t), 1),
                "p50_ms": ms(percentile(steady, 50)),
                "p90_ms": ms(percentile(steady, 90)),
                "p99_ms": ms(percentile(steady, 99)),
                "max_ms": ms(steady[-1] if steady else None),
            },
            "timeline": timeline,
        }


def child_main(spec_path: str) -> int:
    """The load generator process: a JSON spec of bench.loadgen's options plus "out"."""
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    out = spec.pop("out")
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    result = runner(SoakGenerator(argparse.Namespace(**spec)).run())
    Path(out).write_text(json.dumps(result), encoding="utf-8")
    return 0
