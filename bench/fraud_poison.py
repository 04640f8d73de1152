"""The breaker aimed at bystanders (issue 27): poisoning and laundering scenarios for
`make bench-fraud`, against the real server with the fraud settings of the run.

- poison-block: 8 register sends nobody verifies, to random numbers of a victim's number
  block, from 8 addresses on 8 networks, every proof of work solved; then the block's
  registered owners ask for login and reset codes and its newcomers register;
- poison-network: one client sends 8 never-verified codes to 8 blocks; then its neighbours
  (the same IPv4 /24, another /64 of the same IPv6 /48) register;
- laundering: an attacker verifies one code on a number it owns, then sends to numbers nobody
  verifies; counted: the sends served on the good tier (the address's `g:` buckets).

A victim asked for a proof of work and served after solving it counts as served (our pages
solve it by themselves).
"""

from __future__ import annotations

import asyncio
import json
import random
import urllib.parse
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import tornado.httpclient

from bench.fraud_sim import PASSWORD, SimClient, valid_block
from services.captcha.pow import solve
from services.store import keys

VICTIMS = 20  # owners of the poisoned block, newcomers of it, neighbours of the network


@dataclass
class Target:
    """The server the scenarios talk to, as SimClient expects its simulation."""

    base_url: str
    redis: object
    http: tornado.httpclient.AsyncHTTPClient


class Client(SimClient):
    """One client behind the trusted proxy (SimClient's session), solving its proofs of work
    on `pool`."""

    def __init__(self, target: Target, address: str, pool: ThreadPoolExecutor) -> None:
        super().__init__(target, address)  # type: ignore[arg-type]
        self.redis, self.http, self.pool = target.redis, target.http, pool
        self.solved = 0

    async def fetch_json(self, path: str, body: dict | None = None) -> dict:
        response = await self.fetch(path, "GET" if body is None else "POST", body)
        try:
            return json.loads(response.body)
        except ValueError:
            return {"errno": f"http_{response.code}"}

    async def ask_code(self, mobile: str, purpose: str = "register") -> dict:
        """A solved CAPTCHA, the code request, and the proof of work if one is asked for."""
        captcha_id = f"poison{random.getrandbits(64):x}"
        await self.fetch(f"/api/v1.0/image_codes/{captcha_id}")
        text = await self.redis.get(keys.captcha_key(captcha_id)) or "NONE"
        body = {"mobile": mobile, "image_code": text, "image_code_id": captcha_id}
        body["purpose"] = purpose
        answer = await self.fetch_json("/api/v1.0/sms_codes", body)
        if (answer.get("data") or {}).get("reason") == "pow_required":
            loop = asyncio.get_running_loop()
            body["altcha"] = await loop.run_in_executor(
                self.pool, solve, answer["data"]["challenge"]
            )
            self.solved += 1
            answer = await self.fetch_json("/api/v1.0/sms_codes", body)
        return answer

    async def register(self, mobile: str, sandbox_url: str) -> dict:
        inbox = await self.http.fetch(
            f"{sandbox_url}/inbox?{urllib.parse.urlencode({'mobile': mobile})}",
            request_timeout=10,
        )
        code = json.loads(inbox.body)[-1]["datas"][0]
        body = {"mobile": mobile, "sms_code": code, "password": PASSWORD, "password2": PASSWORD}
        return await self.fetch_json("/api/v1.0/users", body)


def reason(answer: dict) -> str:
    return (
        "served"
        if answer.get("errno") == "0"
        else str((answer.get("data") or {}).get("reason") or answer.get("errno"))
    )


async def run_scenarios(base_url: str, redis, sandbox_url: str, seed: int = 7) -> dict:
    rng = random.Random(seed)
    http = tornado.httpclient.AsyncHTTPClient(force_instance=True, max_clients=32)
    pool = ThreadPoolExecutor(2, thread_name_prefix="poison-pow")

    target = Target(base_url, redis, http)

    def client(address: str) -> Client:
        return Client(target, address, pool)

    def number_in(block: str) -> str:
        return f"{block}{rng.randrange(10_000):04d}"

    results: dict[str, dict] = {}
    try:
        # --- a victim's number block ------------------------------------------------------
        block = valid_block(rng)
        owners = list(dict.fromkeys(number_in(block) for _ in range(VICTIMS)))
        for i, mobile in enumerate(owners):
            owner = client(f"100.64.{i}.10")
            assert reason(await owner.ask_code(mobile)) == "served"
            assert (await owner.register(mobile, sandbox_url))["errno"] == "0"
        # Registered before the window: the block's record starts empty (the worst case).
        await redis.flushdb()
        attack = Counter(
            [reason(await client(f"203.0.{i}.5").ask_code(number_in(block))) for i in range(8)]
        )
        outcomes: Counter = Counter()
        victims = [client(f"100.65.{i}.20") for i in range(VICTIMS)]
        for i, mobile in enumerate(owners):
            purpose = "login" if i % 2 == 0 else "reset_password"
            outcomes[f"{purpose} {reason(await victims[i].ask_code(mobile, purpose))}"] += 1
        for i in range(VICTIMS):
            newcomer, mobile = client(f"100.66.{i}.30"), number_in(block)
            victims.append(newcomer)
            answer = await newcomer.ask_code(mobile)
            if reason(answer) == "served":
                answer = await newcomer.register(mobile, sandbox_url)
            outcomes[f"register {reason(answer)}"] += 1
        results["poison-block"] = {
            "attacker": dict(attack),
            "victims": dict(outcomes),
            "victims_solved_pow": sum(v.solved for v in victims),
        }
        # --- a shared network (IPv4 /24 and IPv6 /48) ----------------------------------------
        for name, bot, neighbour in (
            ("poison-network-v4", "198.18.7.7", "198.18.7.{}"),
            ("poison-network-v6", "2001:db8:77:1::7", "2001:db8:77:{:x}::9"),
        ):
            attacker = client(bot)
            attack = Counter(
                [reason(await attacker.ask_code(number_in(valid_block(rng)))) for _ in range(8)]
            )
            attack[f"then {reason(await attacker.ask_code(number_in(valid_block(rng))))}"] += 1
            outcomes, solved = Counter(), 0
            for i in range(VICTIMS):
                neighbour_client = client(neighbour.format(i + 20))
                mobile = number_in(valid_block(rng))
                answer = await neighbour_client.ask_code(mobile)
                if reason(answer) == "served":
                    answer = await neighbour_client.register(mobile, sandbox_url)
                outcomes[f"register {reason(answer)}"] += 1
                solved += neighbour_client.solved
            results[name] = {
                "attacker": dict(attack),
                "victims": dict(outcomes),
                "victims_solved_pow": solved,
            }
        # --- laundering: one conversion on the attacker's own number -----------------------
        launderer = client("198.18.9.9")
        own = number_in(valid_block(rng))
        assert reason(await launderer.ask_code(own)) == "served"
        assert (await launderer.register(own, sandbox_url))["errno"] == "0"
        sent = Counter(
            [reason(await launderer.ask_code(number_in(valid_block(rng)))) for _ in range(8)]
        )
        counts = await redis.hgetall(keys.fraud_counts_key("ip:198.18.9.9"))
        good = sum(int(v) for k, v in counts.items() if k.startswith("g:"))
        results["laundering"] = {"sends": dict(sent), "good_tier_sends": good}
    finally:
        http.close()
        pool.shutdown(cancel_futures=True)
    return results


def table(results: dict[str, dict]) -> str:
    """The scenarios of each run as Markdown rows."""
    lines = [
        "| run | scenario | attacker | victims (20 each) | victims' proofs of work |",
        "|---|---|---|---|---|",
    ]
    for run, scenarios in results.items():
        for name, s in scenarios.items():
            if name == "laundering":
                attacker = ", ".join(f"{k} {v}" for k, v in s["sends"].items())
                victims = f"good-tier sends bought by one conversion: {s['good_tier_sends']}"
                lines.append(f"| {run} | {name} | {attacker} | {victims} | – |")
                continue
            attacker = ", ".join(f"{k} {v}" for k, v in s["attacker"].items())
            victims = ", ".join(f"{k} {v}" for k, v in sorted(s["victims"].items()))
            lines.append(f"| {run} | {name} | {attacker} | {victims} | {s['victims_solved_pow']} |")
    return "\n".join(lines)
