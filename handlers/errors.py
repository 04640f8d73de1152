"""The error mapping: what any exception (or bare HTTP status) answers, in every family."""

from __future__ import annotations

import tornado.web

from services.errors import DBERR_MESSAGE, Ret, ServiceError, is_storage_failure

# Answers for Tornado's own HTTP errors (bad route, method, oversized body, XSRF ...).
HTTP_ERROR_REPLIES = {
    400: (Ret.PARAMERR, "请求格式错误"),
    403: (Ret.REQERR, "CSRF令牌缺失或无效，请刷新页面后重试"),  # only XSRF raises 403
    404: (Ret.NODATA, "接口不存在"),
    405: (Ret.REQERR, "请求方法不支持"),
    413: (Ret.PARAMERR, "请求体过大"),
}


class OriginRefused(ServiceError):
    """A CORS preflight from an origin not in tokens.cors_origins."""

    http_status = 403

    def __init__(self) -> None:
        super().__init__(Ret.REQERR, "来源不被允许")


def describe_error(status_code: int, exc: BaseException | None) -> tuple[int, ServiceError]:
    """Map an exception (or a bare HTTP status) to (HTTP status, outcome for the client)."""
    if isinstance(exc, ServiceError):
        return exc.http_status, exc
    if is_storage_failure(exc):
        return 200, ServiceError(Ret.DBERR, DBERR_MESSAGE)
    if isinstance(exc, tornado.web.HTTPError) or exc is None:
        ret, errmsg = HTTP_ERROR_REPLIES.get(status_code, (Ret.SERVERERR, Ret.SERVERERR.message))
        return status_code, ServiceError(ret, errmsg)
    return 500, ServiceError(Ret.SERVERERR)  # details stay in the log, not in the answer
