"""The one way handlers reach the services: a typed attribute per service, `FromServices`.

`sms = FromServices(lambda services: services.sms)` on a handler class makes `self.sms` the
application's `SmsCodeService`, typed as such for mypy. Handlers (handlers/base.py) and the
delegate that may answer in a handler's place (handlers/shedding.py) use it alike; nothing in
handlers/ reads `application.services` but this module.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar, overload

if TYPE_CHECKING:
    from handlers.application import SmsRegApplication
    from services.composition import Services

T = TypeVar("T")


class HoldsApplication(Protocol):
    """A request handler, or the delegate standing in for one: it knows its application."""

    @property
    def application(self) -> SmsRegApplication: ...


class FromServices(Generic[T]):
    """An attribute that reads one of the application's services; `pick` gives its type."""

    def __init__(self, pick: Callable[[Services], T]) -> None:
        self._pick = pick

    @overload
    def __get__(self, holder: None, owner: type[object]) -> FromServices[T]: ...
    @overload
    def __get__(self, holder: HoldsApplication, owner: type[object]) -> T: ...
    def __get__(self, holder: HoldsApplication | None, owner: type[object]) -> FromServices[T] | T:
        if holder is None:
            return self  # looked up on the class, not on a handler
        return self._pick(holder.application.services)
