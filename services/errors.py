"""Business outcomes as ihome's RET codes: the one exception services raise for a refusal,
and the success a handler answers with."""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass, field
from typing import ClassVar

import pymysql
import redis.exceptions


class Ret(enum.Enum):
    """ihome's RET table (ihome/utils/response_code.py): codes are strings on the wire."""

    OK = ("0", "成功")
    DBERR = ("4001", "数据库查询错误")
    NODATA = ("4002", "无数据")
    DATAEXIST = ("4003", "数据已存在")
    DATAERR = ("4004", "数据错误")
    SESSIONERR = ("4101", "用户未登录")
    LOGINERR = ("4102", "用户登录失败")
    PARAMERR = ("4103", "参数错误")
    USERERR = ("4104", "用户不存在或未激活")
    ROLEERR = ("4105", "用户身份错误")
    PWDERR = ("4106", "密码错误")
    REQERR = ("4201", "非法请求或请求次数受限")
    IPERR = ("4202", "IP受限")
    THIRDERR = ("4301", "第三方系统错误")
    IOERR = ("4302", "文件读写错误")
    SERVERERR = ("4500", "内部错误")
    UNKOWNERR = ("4501", "未知错误")

    @property
    def code(self) -> str:
        return self.value[0]

    @property
    def message(self) -> str:
        return self.value[1]


class ServiceError(Exception):
    """A refusal the client should see: a RET code, a message and optional data."""

    # Business outcomes travel as HTTP 200 with the family's error code; only a refusal that
    # is about the server, not the request (services/codes/admission.py: overloaded), says
    # otherwise.
    http_status = 200

    def __init__(
        self,
        ret: Ret,
        errmsg: str | None = None,
        *,
        data: dict[str, object] | None = None,
        retry_after: int | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(errmsg or ret.message)
        self.ret = ret
        # Which input the refusal is about (mobile, image_code, sms_code, password, password2,
        # username): adapters with finer code tables (meiduo) map on it.
        self.field = field
        self.errmsg = errmsg or ret.message
        self.data = dict(data or {})
        self.retry_after = retry_after
        if retry_after is not None:
            self.data["retry_after"] = retry_after

    @property
    def reason(self) -> str | None:
        """The rate limit or fraud rule that refused (the refusals metric), if one did."""
        reason = self.data.get("reason")
        return reason if isinstance(reason, str) else None


@dataclass(frozen=True)
class Success:
    """A request that succeeded: errno 0, a message and optional data for the client."""

    errmsg: str = Ret.OK.message
    data: dict[str, object] = field(default_factory=dict)
    ret: ClassVar[Ret] = Ret.OK


# Failures of Redis or MySQL (down, restarting, too slow): the client gets DBERR, never a hang.
STORAGE_ERRORS: tuple[type[BaseException], ...] = (
    redis.exceptions.RedisError,
    pymysql.err.Error,
    ConnectionError,
    asyncio.TimeoutError,
)

DBERR_MESSAGE = "数据库暂时不可用，请稍后重试"

# The client libraries whose own failures are storage failures too.
STORAGE_CLIENT_MODULES = ("redis.", "aiomysql.", "pymysql.")


def is_storage_failure(exc: BaseException | None) -> bool:
    """A failure of Redis or MySQL: one of STORAGE_ERRORS, or any exception raised inside
    their client libraries. Under load redis-py's cluster client can tear down a connection
    that another command is writing to, which surfaces as an AttributeError from its own
    code; that is the store failing, not our code, and answers DBERR (503 for a callback,
    which the provider retries), never a 500."""
    if exc is None:
        return False
    if isinstance(exc, STORAGE_ERRORS):
        return True
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    module = str(tb.tb_frame.f_globals.get("__name__", ""))
    return module.startswith(STORAGE_CLIENT_MODULES)
