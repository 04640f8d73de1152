"""Which failures are the store's: they answer DBERR (a callback's 503), never a 500."""

import pytest
import redis.asyncio.connection

from services.errors import Ret, ServiceError, is_storage_failure


def raised(call):
    try:
        call()
    except Exception as exc:
        return exc
    raise AssertionError("nothing raised")


def test_an_error_inside_the_redis_client_is_a_storage_failure():
    """redis-py's cluster client, under load, writes to a connection another command tore down:
    an AttributeError from the library's own code (seen in a CI run as a 500)."""
    connection = redis.asyncio.connection.Connection()
    connection._writer = None  # what a disconnect by another command leaves behind

    exc = raised(lambda: connection._writer.writelines([b"PING"]))  # our frame: not the store's
    assert not is_storage_failure(exc)

    exc = raised(lambda: redis.asyncio.connection.Connection.get_protocol(None))
    assert isinstance(exc, AttributeError)
    assert is_storage_failure(exc)


def test_our_own_bugs_and_outcomes_are_not_storage_failures():
    assert not is_storage_failure(raised(lambda: {}["missing"]))
    assert not is_storage_failure(ServiceError(Ret.PARAMERR, "bad"))
    assert not is_storage_failure(None)


@pytest.mark.parametrize("error", [ConnectionError("refused"), TimeoutError()])
def test_connection_failures_are_storage_failures(error):
    assert is_storage_failure(error)
