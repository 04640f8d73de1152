"""Reading what a host app wrote into its session store: plain data only, never objects.

A host session record is written by another program (Flask-Session, django-redis), and
pickle runs whatever a record names. Anyone who can write to the host's Redis could name
os.system; so records are read with an unpickler that resolves no global at all (except
the set types, which protocol 2 spells as globals) and then checked to be plain data: dicts
with text keys, lists, tuples, sets, text, bytes, numbers, booleans and None. Anything else
is not a session (the caller logs it and treats the browser as logged out).
"""

from __future__ import annotations

import io
import json
import pickle
from typing import Any

import msgspec

MAX_RECORD_BYTES = 65536  # a session of a few keys is well under 1 KiB
MAX_DEPTH = 16


def _latin1_bytes(text: str, encoding: str) -> bytes:
    """How pickle protocols 0-2 spell bytes (`_codecs.encode(text, "latin1")`), nothing else."""
    if not isinstance(text, str) or encoding != "latin1":
        raise NotObjects("the record calls _codecs.encode")
    return text.encode("latin1")


def _empty_bytes(*args: object) -> bytes:
    """Protocol 2's spelling of b"" (`bytes()`); bytes(n) would allocate n bytes."""
    if args:
        raise NotObjects("the record calls bytes with arguments")
    return b""


# The only globals a record may name: the container types protocols 0-2 spell as globals
# (under Python 2's module name too) and their spelling of bytes.
PLAIN_GLOBALS: dict[tuple[str, str], object] = {
    **{(module, "set"): set for module in ("builtins", "__builtin__")},
    **{(module, "frozenset"): frozenset for module in ("builtins", "__builtin__")},
    **{(module, "bytes"): _empty_bytes for module in ("builtins", "__builtin__")},
    ("_codecs", "encode"): _latin1_bytes,
}
PLAIN_SCALARS = (str, bytes, int, float, bool, type(None))
PICKLE_PROTOCOL = 2  # what Flask-Session 0.3 and django-redis readers of any age accept


class NotPlainData(ValueError):
    """A host record that is not plain data, or not a dict of it."""


class NotObjects(NotPlainData):
    """A record that names or holds objects: refused, never made."""


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in PLAIN_GLOBALS:
            return PLAIN_GLOBALS[module, name]
        raise NotObjects(f"the record names {module}.{name}")


def _check_plain(value: object, depth: int = 0) -> None:
    if depth > MAX_DEPTH:
        raise NotPlainData("the record nests too deeply")
    if isinstance(value, PLAIN_SCALARS):
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise NotPlainData("a key is not text")
            _check_plain(item, depth + 1)
        return
    if isinstance(value, list | tuple | set | frozenset):
        for item in value:
            _check_plain(item, depth + 1)
        return
    raise NotObjects(f"the record holds a {type(value).__name__}")


SERIALIZATIONS = ("pickle", "msgpack", "json")


def decode(raw: bytes | str, serialization: str) -> dict[str, Any]:
    """A host record as a dict of plain data, or NotPlainData. Read in `serialization` first,
    then in the others, as Flask-Session 0.7+ reads its own: a store moved from one
    serialisation to another holds records of both while the old ones live."""
    if isinstance(raw, str):  # a client that decodes replies; ours does not
        raw = raw.encode()
    if len(raw) > MAX_RECORD_BYTES:
        raise NotPlainData("the record is too large")
    others = [s for s in SERIALIZATIONS if s != serialization]
    first: NotPlainData | None = None
    for each in (serialization, *others):
        try:
            return _decode_as(raw, each)
        except NotObjects:
            raise  # it reads, and names or holds objects: refused, whatever else it reads as
        except NotPlainData as exc:
            first = first or exc
    assert first is not None
    raise first


def _decode_as(raw: bytes, serialization: str) -> dict[str, Any]:
    try:
        if serialization == "pickle":
            value = _PlainUnpickler(io.BytesIO(raw)).load()
        elif serialization == "msgpack":
            value = msgspec.msgpack.decode(raw)
        else:
            value = json.loads(raw)
    except NotPlainData:
        raise
    except Exception as exc:
        raise NotPlainData(f"the record does not decode as {serialization}") from exc
    if not isinstance(value, dict):
        raise NotPlainData("the record is not a dict")
    _check_plain(value)
    return value


def encode(data: dict[str, Any], serialization: str) -> bytes:
    """A host record in the host's serialisation (data is plain: ours)."""
    if serialization == "pickle":
        return pickle.dumps(data, protocol=PICKLE_PROTOCOL)
    if serialization == "msgpack":
        return msgspec.msgpack.encode(data)
    return json.dumps(data, separators=(",", ":")).encode()
