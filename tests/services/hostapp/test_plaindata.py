"""Host session records are read as plain data: a record that names an object is refused,
never unpickled (anyone who can write to the host's Redis could otherwise run code here)."""

import os
import pickle

import pytest

from services.hostapp import plaindata

FLASK_SESSION = {
    "_permanent": True,
    "csrf_token": "ab" * 20,
    "user_id": 7,
    "name": "n",
    "mobile": "13812345678",
}


class RunsCode:
    """What an attacker's record would carry: unpickling it calls os.system."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("serialization", ["pickle", "msgpack", "json"])
def test_plain_records_read_back_as_written(serialization):
    raw = plaindata.encode(FLASK_SESSION, serialization)
    assert plaindata.decode(raw, serialization) == FLASK_SESSION


@pytest.mark.parametrize("protocol", range(0, pickle.HIGHEST_PROTOCOL + 1))
def test_pickles_of_every_protocol_with_sets_and_tuples_are_plain(protocol):
    record = {"_flashes": [("message", "hi")], "seen": {1, 2}, "f": frozenset({"a"}), "b": b"x"}
    assert plaindata.decode(pickle.dumps(record, protocol=protocol), "pickle") == record


@pytest.mark.parametrize("protocol", range(0, pickle.HIGHEST_PROTOCOL + 1))
def test_a_record_that_names_a_callable_is_refused_and_never_run(tmp_path, protocol):
    marker = tmp_path / "ran"
    raw = pickle.dumps({"user_id": 1, "x": RunsCode(marker)}, protocol=protocol)
    assert pickle.loads(raw) == {"user_id": 1, "x": 0} and marker.exists()  # the attack works...
    marker.unlink()
    with pytest.raises(plaindata.NotPlainData, match=r"posix\.system|os\.system"):
        plaindata.decode(raw, "pickle")  # ...and is refused here
    assert not marker.exists()


def test_objects_and_non_dicts_and_junk_are_refused():
    import datetime

    cases = [
        (pickle.dumps({"when": datetime.datetime(2026, 1, 1)}), "pickle"),
        (pickle.dumps([1, 2]), "pickle"),
        (b"\x80\x04not a pickle", "pickle"),
        (b"", "pickle"),
        (b"\xc1", "msgpack"),
        (b"[1]", "json"),
        (b'{"a": {"b": ' * 40 + b"1" + b"}" * 80, "json"),
        (pickle.dumps({1: "int key"}), "pickle"),
        (b"x" * (plaindata.MAX_RECORD_BYTES + 1), "json"),
    ]
    for raw, serialization in cases:
        with pytest.raises(plaindata.NotPlainData):
            plaindata.decode(raw, serialization)


def test_a_record_cannot_make_the_loader_allocate_gigabytes():
    """`bytes(n)` allocates n bytes: protocol 2 names `bytes` for b"", never with a size."""
    raw = (  # {"a": bytes(0x40000000)} at protocol 2: a GiB
        b"\x80\x02}q\x00X\x01\x00\x00\x00aq\x01c__builtin__\nbytes\nq\x02"
        b"J\x00\x00\x00@\x85q\x03Rq\x04s."
    )
    with pytest.raises(plaindata.NotPlainData):
        plaindata.decode(raw, "pickle")
    assert plaindata.decode(pickle.dumps({"a": b""}, protocol=2), "pickle") == {"a": b""}


@pytest.mark.parametrize("configured", ["pickle", "msgpack", "json"])
@pytest.mark.parametrize("written", ["pickle", "msgpack", "json"])
def test_a_record_written_in_another_serialisation_still_reads(configured, written):
    """Flask-Session 0.7+ writes msgpack and still reads the pickles of 0.3: a store in
    transition holds both, and so may a host whose setting we were not told exactly."""
    raw = plaindata.encode(FLASK_SESSION, written)
    assert plaindata.decode(raw, configured) == FLASK_SESSION


def test_an_object_is_refused_whatever_serialisation_is_configured(tmp_path):
    marker = tmp_path / "ran"
    raw = pickle.dumps({"x": RunsCode(marker)})
    for configured in ("msgpack", "json"):
        with pytest.raises(plaindata.NotPlainData, match="names"):
            plaindata.decode(raw, configured)
    assert not marker.exists()
