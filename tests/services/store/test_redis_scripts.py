"""The Lua loader: every script in services/store/lua/ composes from its pieces and Redis accepts
it; no Lua is left in Python strings."""

from __future__ import annotations

import pytest
import redis as sync_redis

from services.store.redis_scripts import LUA_DIR, PIECES_DIR, pieces_used, script_source

SCRIPTS = sorted(path.stem for path in LUA_DIR.glob("*.lua"))
SERVICES_DIR = LUA_DIR.parent


def test_there_are_scripts_and_pieces():
    assert {"limits_take", "sms_reserve", "sms_release", "fraud_judge"} <= set(SCRIPTS)
    assert (PIECES_DIR / "fixed_window.lua").exists()


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_script_composes_and_redis_compiles_it(name, redis_server):
    source = script_source(name)
    for piece in pieces_used((LUA_DIR / f"{name}.lua").read_text(encoding="utf-8")):
        assert (PIECES_DIR / f"{piece}.lua").read_text(encoding="utf-8") in source
    with sync_redis.Redis(port=redis_server.port) as client:
        # SCRIPT LOAD compiles without running: a syntax error or a bad piece fails here.
        assert client.script_load(source)


def test_pieces_are_written_once_and_used():
    """Each piece is used by some script, and no script repeats a piece's function."""
    scripts = {name: (LUA_DIR / f"{name}.lua").read_text(encoding="utf-8") for name in SCRIPTS}
    for piece_path in PIECES_DIR.glob("*.lua"):
        users = [name for name, text in scripts.items() if piece_path.stem in text.split("\n")[0]]
        assert users, f"{piece_path.name} is used by no script"
        piece = piece_path.read_text(encoding="utf-8")
        functions = [line.split("(")[0] for line in piece.splitlines() if "local function" in line]
        for name, text in scripts.items():
            for function in functions:
                assert function not in text, f"{name}.lua defines {function} again"


def test_no_lua_in_python():
    for module in SERVICES_DIR.rglob("*.py"):
        assert "redis.call(" not in module.read_text(encoding="utf-8"), module
