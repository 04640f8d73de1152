"""The SMS-pumping simulation: attackers and legitimate users against a running server.

One simulated hour is compressed into `real_seconds`; the server under test must be configured
with the same compression (bench/fraud.py does it: resend interval, code lifetime, fraud window
and cool-down divided by the factor; the hourly limits need nothing, since the whole run fits
in one of their windows). The simulator is the server's trusted proxy and speaks for every
client through X-Forwarded-For.

- Attackers: `attacker_addresses` addresses in `attacker_v4_nets` IPv4 /24s and
  `attacker_v6_nets` IPv6 /64s, requesting codes for numbers in `attacker_blocks` number blocks
  at a steady rate, solving every CAPTCHA (the answer is read from Redis: the worst case) and,
  if asked, every proof of work; they never verify a code.
- Legitimate users: at a steady rate from other addresses (a share of them behind the
  attackers' busiest /24s, a shared NAT), numbers spread over many blocks; each solves the
  proof of work if asked (as the page does), reads its code and registers within `verify_within`
  simulated seconds.

Also used, smaller, by tests/test_fraud_sim.py.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import urllib.parse
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import tornado.httpclient

from services.accounts.mobiles import canonical_mobile
from services.captcha.pow import solve
from services.store import keys

PASSWORD = "sim-password-1"


@dataclass
class SimConfig:
    sim_seconds: int = 3600
    real_seconds: float = 300.0
    attack_attempts: int = 2400  # SMS requests by attackers in the simulated hour
    attacker_addresses: int = 2000
    attacker_v4_nets: int = 40
    attacker_v6_nets: int = 10
    attacker_blocks: int = 5
    legit_users: int = 200  # in the simulated hour, at a steady rate
    legit_blocks: int = 200
    legit_share_behind_attacker_nat: float = 0.05
    verify_within: float = 60.0  # simulated seconds
    attackers_solve_pow: bool = True
    concurrency: int = 64
    seed: int = 11
    # A 503 with Retry-After (admission control, the password-hashing bound) to a legitimate
    # user: repeat the request after Retry-After this many times, as the page does.
    legit_repeats_503: int = 0

    @property
    def factor(self) -> float:
        return self.sim_seconds / self.real_seconds


@dataclass
class SimResult:
    attacker_sms: int = 0
    attacker_attempts: int = 0
    legit_users: int = 0
    legit_registered: int = 0
    legit_sms: int = 0
    legit_pow: int = 0
    attacker_pow: int = 0
    budget_left: int = 0
    attacker_refusals: Counter = field(default_factory=Counter)
    legit_failures: Counter = field(default_factory=Counter)
    per_minute: dict[str, list[int]] = field(default_factory=dict)
    # Each registered user's wait: CAPTCHA, SMS request (and proof of work), registration;
    # not the time spent reading the SMS and typing the code (seconds).
    legit_waits: list[float] = field(default_factory=list)

    @property
    def legit_success(self) -> float:
        return self.legit_registered / self.legit_users if self.legit_users else 1.0

    def summary(self) -> dict:
        return {
            "attacker_sms": self.attacker_sms,
            "attacker_attempts": self.attacker_attempts,
            "legit_users": self.legit_users,
            "legit_registered": self.legit_registered,
            "legit_success": round(self.legit_success, 4),
            "legit_sms": self.legit_sms,
            "legit_pow": self.legit_pow,
            "attacker_pow": self.attacker_pow,
            "budget_left": self.budget_left,
            "attacker_refusals": dict(self.attacker_refusals),
            "legit_failures": dict(self.legit_failures),
            "per_minute": self.per_minute,
        }


def valid_block(rng: random.Random) -> str:
    """A number block (7 digits) whose numbers libphonenumber takes for CN mobiles, as the
    server's canonical_mobile does (a drawn block it rejects would be refused 4103)."""
    while True:
        block = f"{rng.choice(('13', '15', '18', '19'))}{rng.randrange(10_000, 100_000)}"
        if canonical_mobile(f"{block}0000") and canonical_mobile(f"{block}9999"):
            return block


def solve_by(challenge: dict, deadline: float) -> str:
    """Solve a proof of work, giving up at `deadline` (time.monotonic()): TimeoutError."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("proof of work given up: out of time")
    return solve(challenge, left)


class Population:
    """Addresses and numbers of attackers and legitimate users (deterministic per seed)."""

    def __init__(self, cfg: SimConfig) -> None:
        rng = random.Random(cfg.seed)
        self.v4_nets = [f"198.{18 + i // 200}.{i % 200}" for i in range(cfg.attacker_v4_nets)]
        self.v6_nets = [f"2a0e:97c0:{0x100 + i:x}:{i:x}" for i in range(cfg.attacker_v6_nets)]
        per_net = max(1, cfg.attacker_addresses // (cfg.attacker_v4_nets + cfg.attacker_v6_nets))
        self.attackers = [f"{net}.{host + 1}" for net in self.v4_nets for host in range(per_net)]
        self.attackers += [
            f"{net}::{host + 1:x}" for net in self.v6_nets for host in range(per_net)
        ]
        # The busiest /24s: the first five carry three times the traffic of the others.
        self.weights = [3.0 if i < 5 * per_net else 1.0 for i in range(len(self.attackers))]
        self.attacker_blocks = [f"1705{i:03d}" for i in range(cfg.attacker_blocks)]
        self.legit_blocks = [valid_block(rng) for _ in range(cfg.legit_blocks)]
        self.busiest_v4 = self.v4_nets[:5]
        self.rng = rng
        self.used: set[str] = set()

    def number_in(self, block: str) -> str:
        while True:
            mobile = f"{block}{self.rng.randrange(10_000):04d}"
            if mobile not in self.used:
                self.used.add(mobile)
                return mobile

    def attacker(self) -> tuple[str, str]:
        address = self.rng.choices(self.attackers, self.weights)[0]
        return address, self.number_in(self.rng.choice(self.attacker_blocks))

    def legit(self, behind_attacker_nat: bool, index: int) -> tuple[str, str]:
        if behind_attacker_nat:
            address = f"{self.rng.choice(self.busiest_v4)}.{200 + index % 50}"
        elif index % 4 == 0:
            address = f"2408:{self.rng.randrange(0x8000, 0x9000):x}:{index:x}::{index % 7 + 1}"
        else:
            address = (
                f"{self.rng.randrange(36, 124)}.{index % 250}.{index // 250}.{index % 200 + 1}"
            )
        return address, self.number_in(self.rng.choice(self.legit_blocks))


class SimClient:
    """One client's HTTP session (cookies), speaking through the trusted proxy."""

    def __init__(self, sim: Simulation, address: str, repeats_503: int = 0) -> None:
        self.sim = sim
        self.address = address
        self.cookies: dict[str, str] = {}
        self.repeats_503 = repeats_503

    async def fetch(self, path: str, method: str = "GET", body: dict | None = None):
        """One request; a 503 with Retry-After repeated after it, up to repeats_503 times."""
        for _ in range(self.repeats_503):
            response = await self.fetch_once(path, method, body)
            wait = response.headers.get("Retry-After") if response.code == 503 else None
            if wait is None:
                return response
            await asyncio.sleep(float(wait))
        return await self.fetch_once(path, method, body)

    async def fetch_once(self, path: str, method: str = "GET", body: dict | None = None):
        headers = {"X-Forwarded-For": self.address}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        data = None
        if body is not None:
            data = json.dumps(body)
            headers["Content-Type"] = "application/json"
            headers["X-CSRFToken"] = self.cookies.get("csrf_token", "")
        response = await self.sim.http.fetch(
            self.sim.base_url + path,
            method=method,
            body=data,
            headers=headers,
            raise_error=False,
            request_timeout=30,
        )
        for cookie in response.headers.get_list("Set-Cookie"):
            name, _, rest = cookie.partition("=")
            self.cookies[name] = rest.split(";", 1)[0]
        return response

    async def request_code(
        self, mobile: str, solve_pow: bool, pool: ThreadPoolExecutor, deadline: float
    ) -> tuple[dict, bool]:
        """CAPTCHA (answer read from Redis), then the SMS request; (answer, solved a PoW).
        The proof of work is solved on `pool` by `deadline` (time.monotonic(); TimeoutError),
        however long it waited for a thread."""
        captcha_id = f"sim{next(self.sim.ids)}"
        await self.fetch(f"/api/v1.0/image_codes/{captcha_id}")
        text = await self.sim.redis.get(keys.captcha_key(captcha_id))
        query = {"image_code": text or "NONE", "image_code_id": captcha_id}
        answer = await self.sms(mobile, query)
        data = answer.get("data") or {}
        if solve_pow and data.get("reason") == "pow_required":
            loop = asyncio.get_running_loop()
            challenge = data["challenge"]
            query["altcha"] = await loop.run_in_executor(pool, solve_by, challenge, deadline)
            return await self.sms(mobile, query), True
        return answer, False

    async def sms(self, mobile: str, query: dict) -> dict:
        response = await self.fetch(f"/api/v1.0/sms_codes/{mobile}?{urllib.parse.urlencode(query)}")
        try:
            return json.loads(response.body)
        except ValueError:
            return {"errno": f"http_{response.code}"}


class Simulation:
    """Runs the attack and the legitimate traffic against one server; counts what went out."""

    def __init__(self, cfg: SimConfig, base_url: str, redis, sandbox_url: str, budget: int):
        self.cfg = cfg
        self.base_url = base_url
        self.redis = redis
        self.sandbox_url = sandbox_url
        self.budget = budget
        self.http = tornado.httpclient.AsyncHTTPClient(force_instance=True, max_clients=256)
        self.population = Population(cfg)
        self.ids = iter(range(10**9))
        self.result = SimResult()
        minutes = max(1, cfg.sim_seconds // 60)
        self.result.per_minute = {"attacker": [0] * minutes, "legit": [0] * minutes}
        self.gate = asyncio.Semaphore(cfg.concurrency)
        self.user_gate = asyncio.Semaphore(cfg.concurrency)  # users do not queue behind bots
        # Proofs of work are real CPU: the bots' on two threads of their own, which stop when
        # the attack's hour is over; each legitimate user's on a pool the bots cannot crowd.
        self.bot_cpu = ThreadPoolExecutor(2, thread_name_prefix="bot-pow")
        self.user_cpu = ThreadPoolExecutor(4, thread_name_prefix="user-pow")
        self.start = 0.0

    def count_sms(self, kind: str, at: float) -> None:
        """Count a sent SMS in the simulated minute its request was scheduled for."""
        minute = min(int(at // 60), len(self.result.per_minute[kind]) - 1)
        self.result.per_minute[kind][minute] += 1

    async def run(self) -> SimResult:
        cfg = self.cfg
        rng = random.Random(cfg.seed + 1)
        events = [(cfg.sim_seconds * (i + rng.random()) / cfg.attack_attempts, "a", i)
                  for i in range(cfg.attack_attempts)]  # fmt: skip
        events += [(cfg.sim_seconds * (i + 0.5) / cfg.legit_users, "l", i)
                   for i in range(cfg.legit_users)]  # fmt: skip
        events.sort()
        self.start = time.monotonic()
        tasks = []
        for at, kind, index in events:
            delay = at / cfg.factor - (time.monotonic() - self.start)
            if delay > 0:
                await asyncio.sleep(delay)  # a load generator keeps its schedule
            coro = self.attacker(at) if kind == "a" else self.legit(index, at)
            tasks.append(asyncio.ensure_future(self.guarded(kind, coro)))
        await asyncio.gather(*tasks)
        used = int(await self.redis.get(keys.sms_global_hourly_key()) or 0)
        self.result.budget_left = self.budget - used
        self.http.close()
        self.bot_cpu.shutdown(cancel_futures=True)
        self.user_cpu.shutdown(cancel_futures=True)
        return self.result

    async def guarded(self, kind: str, coro) -> None:
        """A client whose request failed at the HTTP level (timeout, reset) counts as refused."""
        try:
            await coro
        except (OSError, tornado.httpclient.HTTPError) as exc:
            failures = self.result.attacker_refusals if kind == "a" else self.result.legit_failures
            failures[f"http:{type(exc).__name__}"] += 1

    async def attacker(self, at: float) -> None:
        address, mobile = self.population.attacker()
        async with self.gate:
            self.result.attacker_attempts += 1
            # The attack lasts the simulated hour: a proof of work not found by then is given up.
            hour_over = self.start + self.cfg.sim_seconds / self.cfg.factor
            answer, solved = await SimClient(self, address).request_code(
                mobile, self.cfg.attackers_solve_pow, self.bot_cpu, hour_over
            )
        self.result.attacker_pow += solved
        if answer.get("errno") == "0":
            self.result.attacker_sms += 1
            self.count_sms("attacker", at)
        else:
            reason = (answer.get("data") or {}).get("reason") or answer.get("errno")
            self.result.attacker_refusals[reason] += 1

    async def legit(self, index: int, at: float) -> None:
        cfg = self.cfg
        self.result.legit_users += 1
        behind_nat = index % round(1 / cfg.legit_share_behind_attacker_nat) == 0
        address, mobile = self.population.legit(behind_nat, index)
        client = SimClient(self, address, cfg.legit_repeats_503)
        started = time.monotonic()
        async with self.user_gate:
            answer, solved = await client.request_code(
                mobile, True, self.user_cpu, time.monotonic() + 600
            )
        waited = time.monotonic() - started
        self.result.legit_pow += solved
        if answer.get("errno") != "0":
            reason = (answer.get("data") or {}).get("reason") or answer.get("errno")
            self.result.legit_failures[f"sms:{reason}"] += 1
            return
        self.result.legit_sms += 1
        self.count_sms("legit", at)
        # Reading the SMS and typing the code: 10 s to verify_within, simulated.
        think = random.Random(index).uniform(min(10.0, cfg.verify_within), cfg.verify_within)
        await asyncio.sleep(think / cfg.factor)
        code = await self.code_of(mobile)
        started = time.monotonic()
        async with self.user_gate:
            response = await client.fetch(
                "/api/v1.0/users",
                "POST",
                {"mobile": mobile, "sms_code": code, "password": PASSWORD, "password2": PASSWORD},
            )
        try:
            answer = json.loads(response.body)
        except ValueError:
            answer = {"errno": f"http_{response.code}"}
        if answer.get("errno") == "0":
            self.result.legit_registered += 1
            self.result.legit_waits.append(waited + time.monotonic() - started)
        else:
            self.result.legit_failures[f"register:{answer.get('errno')}"] += 1

    async def code_of(self, mobile: str) -> str:
        response = await self.http.fetch(
            f"{self.sandbox_url}/inbox?{urllib.parse.urlencode({'mobile': mobile})}",
            request_timeout=10,
        )
        return json.loads(response.body)[-1]["datas"][0]


def server_overrides(cfg: SimConfig) -> dict[str, dict[str, object]]:
    """Config that compresses the server's clocks like the simulation's.

    Only the resend interval needs it. The hourly limits, the fraud window (1 h) and the
    cool-down (1 h) are left as they are: the whole simulated hour fits in one of them, which
    is what they would see in real time too (nothing rolls over or expires within the hour),
    and it stays so when a busy machine makes the run take longer than planned.
    """
    return {"sms": {"resend_interval": max(1, round(60 / cfg.factor))}}
