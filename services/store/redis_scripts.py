"""The Lua scripts (services/store/lua/*.lua), composed from shared pieces, and a way to run several
independent ones in one round trip.

Redis scripts cannot include each other, so a rule that several scripts need (take a place in a
fixed window, lift a resend guard, put a code back) is written once, as a piece in
services/store/lua/pieces/, and a script names the pieces it uses on its first line:

    --! uses: fixed_window, send_guard

The loader puts those pieces (their `local function`s) in front of the script's own text. Each
script touches the keys of one hash slot only, so every one of them runs on Redis Cluster too.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from services.store.redisclient import RedisClient

ScriptArg = str | int | float

LUA_DIR = Path(__file__).resolve().parent / "lua"
PIECES_DIR = LUA_DIR / "pieces"
USES = "--! uses:"


def pieces_used(text: str) -> list[str]:
    """The pieces named by a `--! uses: a, b` first line (none without one)."""
    first_line = text.split("\n", 1)[0]
    if not first_line.startswith(USES):
        return []
    return [name.strip() for name in first_line[len(USES) :].split(",") if name.strip()]


@functools.cache
def script_source(name: str) -> str:
    """The full text of script `name` (services/store/lua/<name>.lua): its pieces, then itself."""
    text = (LUA_DIR / f"{name}.lua").read_text(encoding="utf-8")
    pieces = [
        (PIECES_DIR / f"{piece}.lua").read_text(encoding="utf-8") for piece in pieces_used(text)
    ]
    return "\n".join([*pieces, text])


def register(redis: RedisClient, name: str) -> AsyncScript:
    """Script `name` bound to a client: loaded into Redis (by its SHA) on its first use."""
    return redis.register_script(script_source(name))


@dataclass(frozen=True)
class ScriptCall:
    """One run of a script: which one, on which keys (one hash slot), with which arguments."""

    script: AsyncScript
    keys: Sequence[str]
    args: Sequence[ScriptArg]

    async def run(self) -> object:
        return await self.script(keys=self.keys, args=self.args)


async def run_together(redis: RedisClient, calls: Sequence[ScriptCall]) -> list[object]:
    """Run independent scripts in one round trip (in a Cluster, one per node, in parallel).

    Each script is atomic on its own slot; together they are not: the caller decides what a
    mix of results means and gives back what the successful ones took. Returns each script's
    reply, or the exception it raised, in order. Raises only if the round trip itself failed
    (then any of them may or may not have run).
    """
    pipeline = redis.pipeline(transaction=False)
    for call in calls:
        # execute_command, not evalsha(): the Cluster pipeline blocks the method (a script
        # with keys of several slots would fail) but routes the command by its keys.
        pipeline.execute_command("EVALSHA", call.script.sha, len(call.keys), *call.keys, *call.args)
    replies: list[object] = list(await pipeline.execute(raise_on_error=False))
    for index, reply in enumerate(replies):
        if isinstance(reply, NoScriptError):
            # This server has not seen the script yet (a restart, a new node): the script did
            # not run, so run it alone now, which loads it first.
            try:
                replies[index] = await calls[index].run()
            except Exception as error:
                replies[index] = error
    return replies


async def give_back_together(redis: RedisClient, calls: Sequence[ScriptCall]) -> bool:
    """Run give-back scripts in one round trip, best effort: True if every one of them ran.

    A give-back only ever lowers a count or lifts a guard, so one that fails (Redis down
    mid-request) is left to the keys' expiry; the caller logs it.
    """
    try:
        replies = await run_together(redis, calls)
    except Exception:
        return False
    return not any(isinstance(reply, Exception) for reply in replies)
