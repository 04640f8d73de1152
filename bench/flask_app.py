# ruff: noqa: UP031  (the view keeps seed 000's own %-formatting)
"""(b) The tutorials' design: seed 000's Flask view under gunicorn with sync workers.

  BENCH_REDIS_URL=... BENCH_MYSQL_PORT=... BENCH_RONGLIAN_URL=... \
      gunicorn -w 4 -b 127.0.0.1:P bench.flask_app:app

The view is /work/shared/seeds/000 ("Flask项目--发送短信验证码") step by step: blocking redis-py
(GET the CAPTCHA, DELETE it, compare, GET the 60 s flag), the User lookup (here PyMySQL on one
persistent connection per worker, what Flask-SQLAlchemy's pool gives a sync worker), SETEX code
and flag, then the CCP helper's TemplateSMS call made with `requests` (one Session per worker,
so keep-alive to the provider; the signing is the protocol of
services/providers/ronglian.py). Only change for the benchmark: the CAPTCHA is read
from `image_code:<id>` (our key) so both designs share seeds.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import os
import random

import pymysql
import redis
import requests
from flask import Flask, jsonify, request
from werkzeug.routing import BaseConverter

ACCOUNT_SID = os.environ.get("BENCH_RONGLIAN_SID", "8aaf0708a2b3c4d5e6f7a8b9c0d1e2f3")
AUTH_TOKEN = os.environ.get("BENCH_RONGLIAN_TOKEN", "sandbox0token0000000000000000000a")
APP_ID = os.environ.get("BENCH_RONGLIAN_APP_ID", "8aaf0708app0000000000000000000ab")
RONGLIAN_URL = os.environ.get("BENCH_RONGLIAN_URL", "http://127.0.0.1:8883")
SMS_CODE_REDIS_EXPIRES = 300
SEND_SMS_CODE_INTERVAL = 60
CHINA_TIME = datetime.timezone(datetime.timedelta(hours=8))


class RET:
    OK = "0"
    DBERR = "4001"
    NODATA = "4002"
    DATAEXIST = "4003"
    DATAERR = "4004"
    REQERR = "4201"
    THIRDERR = "4301"
    PARAMERR = "4103"


class ReConverter(BaseConverter):
    """ihome's `re(...)` URL converter."""

    def __init__(self, url_map, regex):
        super().__init__(url_map)
        self.regex = regex


app = Flask(__name__)
app.url_map.converters["re"] = ReConverter
redis_store = redis.StrictRedis.from_url(
    os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"), decode_responses=True
)
_db: pymysql.Connection | None = None
_http = requests.Session()


def db() -> pymysql.Connection:
    """This worker's pooled connection (opened on first use, reopened after a failure)."""
    global _db
    if _db is None:
        _db = pymysql.connect(
            host="127.0.0.1",
            port=int(os.environ.get("BENCH_MYSQL_PORT", "3306")),
            user=os.environ.get("BENCH_MYSQL_USER", "smsreg"),
            password=os.environ.get("BENCH_MYSQL_PASSWORD", "smsreg"),
            database=os.environ.get("BENCH_MYSQL_DATABASE", "smsreg"),
            charset="utf8mb4",
            autocommit=True,
        )
    return _db


def find_user_by_mobile(mobile: str):
    """User.query.filter_by(mobile=mobile).first()"""
    global _db
    try:
        with db().cursor() as cur:
            cur.execute(
                "SELECT id, name, mobile FROM ih_user_profile WHERE mobile = %s LIMIT 1", (mobile,)
            )
            return cur.fetchone()
    except pymysql.err.OperationalError:
        _db = None
        raise


class CCP:
    """The tutorials' yuntongxun helper: send_template_sms returns 0 on success, -1 otherwise."""

    def send_template_sms(self, to, datas, temp_id):
        timestamp = datetime.datetime.now(CHINA_TIME).strftime("%Y%m%d%H%M%S")
        sig = hashlib.md5(f"{ACCOUNT_SID}{AUTH_TOKEN}{timestamp}".encode()).hexdigest().upper()
        auth = base64.b64encode(f"{ACCOUNT_SID}:{timestamp}".encode()).decode()
        url = f"{RONGLIAN_URL}/2013-12-26/Accounts/{ACCOUNT_SID}/SMS/TemplateSMS?sig={sig}"
        response = _http.post(
            url,
            json={"to": to, "appId": APP_ID, "templateId": str(temp_id), "datas": datas},
            headers={
                "Accept": "application/json",
                "Content-Type": "application/json;charset=utf-8",
                "Authorization": auth,
            },
            timeout=5,
        )
        if response.json().get("statusCode") == "000000":
            return 0
        return -1


@app.route(r"/api/v1.0/sms_codes/<re(r'1[34578]\d{9}'):mobile>")
def get_sms_code(mobile):
    """获取短信验证码 (seed 000)"""
    image_code = request.args.get("image_code")
    image_code_id = request.args.get("image_code_id")
    if not all([image_code_id, image_code]):
        return jsonify(errno=RET.PARAMERR, errmsg="参数不完整")

    try:
        real_image_code = redis_store.get("image_code:%s" % image_code_id)
    except Exception as e:
        app.logger.error(e)
        return jsonify(errno=RET.DBERR, errmsg="redis数据库异常")
    if real_image_code is None:
        return jsonify(errno=RET.NODATA, errmsg="图片验证码失效")
    try:
        redis_store.delete("image_code:%s" % image_code_id)
    except Exception as e:
        app.logger.error(e)
    if real_image_code.lower() != image_code.lower():
        return jsonify(errno=RET.DATAERR, errmsg="图片验证码错误")

    try:
        send_flag = redis_store.get("send_sms_code_%s" % mobile)
    except Exception as e:
        app.logger.error(e)
    else:
        if send_flag is not None:
            return jsonify(errno=RET.REQERR, errmsg="请求过于频繁,请60秒后重试")

    try:
        user = find_user_by_mobile(mobile)
    except Exception as e:
        app.logger.error(e)
    else:
        if user is not None:
            return jsonify(errno=RET.DATAEXIST, errmsg="手机号已存在")

    sms_code = "%06d" % random.randint(0, 999999)
    try:
        redis_store.setex("sms_code_%s" % mobile, SMS_CODE_REDIS_EXPIRES, sms_code)
        redis_store.setex("send_sms_code_%s" % mobile, SEND_SMS_CODE_INTERVAL, 1)
    except Exception as e:
        app.logger.error(e)
        return jsonify(errno=RET.DBERR, errmsg="保存短信验证码异常")

    try:
        ccp = CCP()
        result = ccp.send_template_sms(mobile, [sms_code, str(int(SMS_CODE_REDIS_EXPIRES / 60))], 1)
    except Exception as e:
        app.logger.error(e)
        return jsonify(errno=RET.THIRDERR, errmsg="发送异常")
    if result == 0:
        return jsonify(errno=RET.OK, errmsg="发送成功")
    return jsonify(errno=RET.THIRDERR, errmsg="发送失败")
