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

For bench/attack_mix.py, the rest of the tutorials' registration in the same style: the
image-code view (the same `captcha` package, size and JPEG quality as ours, SETEX
`image_code:<id>`) and the register view (GET/DELETE sms_code_<mobile>, compare, the password
hashed as ours hashes it (argon2id, argon2-cffi's defaults) in the worker, INSERT the user, the
login that Flask-Session makes: a session SETEX in Redis and its cookie). The mobile pattern
takes 19x numbers too (issued since 2017; the tutorials' 1[34578] predates them).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import io
import json
import os
import random
import re
import secrets

import argon2
import pymysql
import redis
import requests
from captcha.image import ImageCaptcha
from flask import Flask, jsonify, make_response, request
from werkzeug.routing import BaseConverter

ACCOUNT_SID = os.environ.get("BENCH_RONGLIAN_SID", "8aaf0708a2b3c4d5e6f7a8b9c0d1e2f3")
AUTH_TOKEN = os.environ.get("BENCH_RONGLIAN_TOKEN", "sandbox0token0000000000000000000a")
APP_ID = os.environ.get("BENCH_RONGLIAN_APP_ID", "8aaf0708app0000000000000000000ab")
RONGLIAN_URL = os.environ.get("BENCH_RONGLIAN_URL", "http://127.0.0.1:8883")
SMS_CODE_REDIS_EXPIRES = 300
SEND_SMS_CODE_INTERVAL = 60
CHINA_TIME = datetime.timezone(datetime.timedelta(hours=8))
IMAGE_CODE_REDIS_EXPIRES = 180
ALPHABET = "ACEFHJKMNPRTUVWXY34679"
HASHER = argon2.PasswordHasher()  # what our server hashes new passwords with


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
_captcha = ImageCaptcha(width=160, height=60)


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


@app.route(r"/api/v1.0/sms_codes/<re(r'1[3-9]\d{9}'):mobile>")
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


@app.route("/api/v1.0/image_codes/<image_code_id>")
def get_image_code(image_code_id):
    """获取图片验证码"""
    text = "".join(random.choice(ALPHABET) for _ in range(4))
    buffer = io.BytesIO()
    _captcha.generate_image(text).save(buffer, format="JPEG", quality=70)
    try:
        redis_store.setex("image_code:%s" % image_code_id, IMAGE_CODE_REDIS_EXPIRES, text)
    except Exception as e:
        app.logger.error(e)
        return jsonify(errno=RET.DBERR, errmsg="保存图片验证码失败")
    resp = make_response(buffer.getvalue())
    resp.headers["Content-Type"] = "image/jpg"
    return resp


@app.route("/api/v1.0/users", methods=["POST"])
def register():
    """注册"""
    req_dict = request.get_json(silent=True) or {}
    mobile = req_dict.get("mobile")
    sms_code = req_dict.get("sms_code")
    password = req_dict.get("password")
    password2 = req_dict.get("password2")
    if not all([mobile, sms_code, password, password2]):
        return jsonify(errno=RET.PARAMERR, errmsg="参数不完整")
    if not re.match(r"1[3-9]\d{9}$", mobile):
        return jsonify(errno=RET.PARAMERR, errmsg="手机号格式错误")
    if password != password2:
        return jsonify(errno=RET.PARAMERR, errmsg="两次密码不一致")
    try:
        real_sms_code = redis_store.get("sms_code_%s" % mobile)
    except Exception as e:
        app.logger.error(e)
        return jsonify(errno=RET.DBERR, errmsg="读取真实短信验证码异常")
    if real_sms_code is None:
        return jsonify(errno=RET.NODATA, errmsg="短信验证码失效")
    try:
        redis_store.delete("sms_code_%s" % mobile)
    except Exception as e:
        app.logger.error(e)
    if real_sms_code != sms_code:
        return jsonify(errno=RET.DATAERR, errmsg="短信验证码错误")
    password_hash = HASHER.hash(password)  # user.password = password
    global _db
    try:
        with db().cursor() as cur:
            cur.execute(
                "INSERT INTO ih_user_profile (name, password_hash, mobile) VALUES (%s, %s, %s)",
                (mobile, password_hash, mobile),
            )
            user_id = cur.lastrowid
    except pymysql.err.IntegrityError as e:
        app.logger.error(e)
        return jsonify(errno=RET.DATAEXIST, errmsg="手机号已存在")
    except pymysql.err.OperationalError as e:
        app.logger.error(e)
        _db = None
        return jsonify(errno=RET.DBERR, errmsg="查询数据库异常")
    # session["name"] = mobile; session["mobile"] = mobile; session["user_id"] = user.id
    sid = secrets.token_urlsafe(24)
    session = {"name": mobile, "mobile": mobile, "user_id": user_id}
    redis_store.setex("session:%s" % sid, 86400, json.dumps(session))
    resp = jsonify(errno=RET.OK, errmsg="注册成功")
    resp.set_cookie("session", sid, httponly=True)
    return resp
