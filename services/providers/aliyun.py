"""Aliyun SMS (dysmsapi 2017-05-25) SendSms, signed with ACS3-HMAC-SHA256 (signature V3).

The request is the one the official SDK (alibabacloud-dysmsapi20170525) makes: POST / with
the parameters in the query, an empty body, the x-acs-* headers and an Authorization header
over a canonical request (docs/PROVIDERS.md).
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import logging
import secrets
import urllib.parse
from typing import Any, cast

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from services.accounts.mobiles import mask_mobile
from services.config import AliyunConfig
from services.providers.base import (
    Channel,
    CodeMessage,
    Outcome,
    ProviderError,
    classify_http_status,
    classify_transport_error,
)
from services.providers.pushes import MalformedReceipt, Receipt, json_document, valid_message_id
from services.validation import parse_json

log = logging.getLogger(__name__)

API_VERSION = "2017-05-25"
ALGORITHM = "ACS3-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
MAX_REPORTS = 1000  # reports in one SmsReport push

# Answers about this number: every provider would refuse the same, so no failover.
NUMBER_REFUSALS = {
    "isv.MOBILE_NUMBER_ILLEGAL": "number format rejected",
    "isv.BUSINESS_LIMIT_CONTROL": "per-number throttle (1/min, 5/hour, 10/day)",
    "isv.MOBILE_COUNT_OVER_LIMIT": "too many numbers",
    "isv.BLACK_KEY_CONTROL_LIMIT": "number on the blacklist",
    "isv.DOMESTIC_NUMBER_NOT_SUPPORTED": "template cannot send to this number",
}
# Codes an operator must act on (credentials, account, balance, template, signature).
CONFIG_ERRORS = {
    "InvalidAccessKeyId.NotFound": "wrong access_key_id",
    "SignatureDoesNotMatch": "wrong access_key_secret",
    "isv.AMOUNT_NOT_ENOUGH": "account balance exhausted",
    "isv.OUT_OF_SERVICE": "account suspended (balance)",
    "isv.ACCOUNT_NOT_EXISTS": "account does not exist",
    "isv.ACCOUNT_ABNORMAL": "account abnormal",
    "isv.SMS_TEMPLATE_ILLEGAL": "template does not exist: wrong template_code",
    "isv.SMS_SIGNATURE_ILLEGAL": "signature does not exist: wrong sign_name",
    "isv.SMS_SIGN_ILLEGAL": "signature forbidden",
    "isp.RAM_PERMISSION_DENY": "the access key lacks AliyunDysmsFullAccess",
    "isv.PRODUCT_UN_SUBSCRIPT": "SMS service not enabled for this account",
    "isv.DAY_LIMIT_CONTROL": "the account's daily volume limit is reached",
    "InvalidTimeStamp.Expired": "request date out of window: check the server clock",
}


def percent_encode(value: str) -> str:
    """RFC 3986 encoding as Aliyun's signatures use it: only A-Z a-z 0-9 - _ . ~ stay."""
    return urllib.parse.quote(value, safe="~")


def canonical_query(params: dict[str, str]) -> str:
    return "&".join(f"{percent_encode(k)}={percent_encode(v)}" for k, v in sorted(params.items()))


def v3_signature(
    secret: str,
    method: str,
    path: str,
    params: dict[str, str],
    headers: dict[str, str],
    signed_headers: list[str],
    payload_sha256: str,
) -> str:
    """Hex HMAC-SHA256 over the V3 canonical request (header names lower case, sorted).

    The Aliyun sandbox verifies signatures with this same function, so it is proved right
    by the official SDK's requests, which the sandbox must accept (test_aliyun_sandbox.py).
    """
    canonical_headers = "".join(
        f"{name}:{headers.get(name, '').strip()}\n" for name in signed_headers
    )
    canonical_request = "\n".join(
        [
            method,
            path or "/",
            canonical_query(params),
            canonical_headers,
            ";".join(signed_headers),
            payload_sha256,
        ]
    )
    to_sign = f"{ALGORITHM}\n{hashlib.sha256(canonical_request.encode()).hexdigest()}"
    return hmac.new(secret.encode(), to_sign.encode(), hashlib.sha256).hexdigest()


def acs_date(now: datetime.datetime | None = None) -> str:
    moment = now or datetime.datetime.now(datetime.UTC)
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class AliyunProvider:
    """SendSms through one AsyncHTTPClient (the server's), every call bounded by timeouts."""

    name = "aliyun"
    channels = frozenset({Channel.SMS})

    def __init__(self, http: AsyncHTTPClient, config: AliyunConfig) -> None:
        self._http = http
        self._config = config
        self._base_url = config.base_url.rstrip("/")
        self._host = urllib.parse.urlsplit(self._base_url).netloc

    def signed_request(
        self,
        params: dict[str, str],
        action: str = "SendSms",
        now: datetime.datetime | None = None,
    ) -> HTTPRequest:
        """The signed POST for one API call (public so tests can check what it sends)."""
        headers = {
            "host": self._host,
            "x-acs-action": action,
            "x-acs-version": API_VERSION,
            "x-acs-date": acs_date(now),
            "x-acs-signature-nonce": secrets.token_hex(16),
            "x-acs-content-sha256": EMPTY_SHA256,
            "accept": "application/json",
        }
        signed = sorted(name for name in headers if name != "accept")
        signature = v3_signature(
            self._config.access_key_secret, "POST", "/", params, headers, signed, EMPTY_SHA256
        )
        headers["Authorization"] = (
            f"{ALGORITHM} Credential={self._config.access_key_id},"
            f"SignedHeaders={';'.join(signed)},Signature={signature}"
        )
        return HTTPRequest(
            f"{self._base_url}/?{canonical_query(params)}",
            method="POST",
            headers=headers,
            body=b"",
            connect_timeout=self._config.connect_timeout,
            request_timeout=self._config.request_timeout,
        )

    async def send(self, message: CodeMessage) -> str:
        """Send one SMS; return its BizId or raise ProviderError with the outcome."""
        params = {
            "PhoneNumbers": message.mobile,
            "SignName": self._config.sign_name,
            "TemplateCode": self._config.template_code,
            "TemplateParam": json.dumps({"code": message.code}, separators=(",", ":")),
        }
        if message.reference:
            params["OutId"] = message.reference
        who = mask_mobile(message.mobile)
        try:
            response = await self._http.fetch(self.signed_request(params), raise_error=False)
        except (OSError, HTTPClientError) as exc:
            status, outcome = classify_transport_error(exc)
            log.warning("aliyun unreachable sending to %s: %s (%s)", who, exc, outcome.value)
            raise ProviderError(self.name, status, outcome) from None
        try:
            answer = cast(dict[str, Any], parse_json(response.body))  # not an object: TypeError
            code = str(answer["Code"])
        except (ValueError, TypeError, KeyError):
            if response.code != 200:
                log.warning("aliyun failed sending to %s: HTTP %s", who, response.code)
                raise ProviderError(
                    self.name, f"http_{response.code}", classify_http_status(response.code)
                ) from None
            log.warning("aliyun answered a non-protocol body sending to %s", who)
            raise ProviderError(self.name, "bad_body", Outcome.UNKNOWN) from None
        if response.code == 200 and code == "OK":
            log.debug("sms sent to %s through aliyun", who)
            return str(answer.get("BizId", ""))
        text = answer.get("Message", "")
        if code in NUMBER_REFUSALS:
            log.warning("aliyun %s %s (%s) sending to %s", code, NUMBER_REFUSALS[code], text, who)
            raise ProviderError(self.name, code, Outcome.NUMBER_REFUSED)
        if code in CONFIG_ERRORS:
            log.error("aliyun %s %s (%s) sending to %s", code, CONFIG_ERRORS[code], text, who)
        else:
            log.warning("aliyun %s refused (%s) sending to %s", code, text, who)
        # Aliyun answered with an error code: nothing was sent, on its side's account.
        raise ProviderError(self.name, code, Outcome.PROVIDER_FAILED)


def parse_aliyun_sms(body: bytes) -> list[Receipt]:
    """Aliyun's SmsReport HTTP push: a JSON array of reports (biz_id, success, err_code)."""
    reports = json_document(body, "body is not JSON")
    if not isinstance(reports, list) or not 0 < len(reports) <= MAX_REPORTS:
        raise MalformedReceipt(f"expected a JSON array of 1 to {MAX_REPORTS} reports")
    receipts = []
    for report in reports:
        if not isinstance(report, dict) or not isinstance(report.get("success"), bool):
            raise MalformedReceipt("each report needs biz_id and a boolean success")
        reason = report.get("err_code", "")
        if not isinstance(reason, str) or len(reason) > 32:
            raise MalformedReceipt("err_code malformed")
        delivered = report["success"]
        message_id = valid_message_id(report.get("biz_id"))
        receipts.append(Receipt("aliyun", message_id, delivered, reason, not delivered))
    return receipts
