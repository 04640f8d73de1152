"""Logging set-up: plain text or one JSON object per line, never a secret."""

from __future__ import annotations

import json
import logging
import time

# Attributes every LogRecord has; anything else was passed with extra= and is structured data.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the extra= fields (route, errno, request_id ...)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(process)d %(levelname)s %(name)s %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # curl's verbose trace prints request lines and headers (sig, Authorization): never log it.
    logging.getLogger("tornado.curl_httpclient").setLevel(logging.INFO)
    # Tornado's own access log would repeat our access line with the query string in it.
    logging.getLogger("tornado.access").setLevel(logging.WARNING)
