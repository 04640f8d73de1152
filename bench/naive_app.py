"""(c) The naive async yardstick: one Tornado process, the seed's steps as separate awaits.

  python -m bench.naive_app --port P --redis-url URL --mysql-port N --ronglian-url URL

GET /api/v1.0/sms_codes/<mobile>  GET captcha, DEL captcha, GET guard, SELECT user, SETEX code,
                                  SETEX guard (six round trips, redis.asyncio + aiomysql pool),
                                  then the default AsyncHTTPClient() (simple_httpclient: a new
                                  connection per request) to the Ronglian sandbox.
GET /api/v1.0/image_codes/<id>    renders the CAPTCHA inline on the event loop (same `captcha`
                                  package, size and JPEG quality as
                                  services/captcha/service.py), SETEX.
POST /api/v1.0/users               the tutorials' registration, for bench/attack_mix.py: JSON
                                  {mobile, sms_code, password, password2}; GET sms_code_<mobile>,
                                  DEL, compare, the password hashed as ours hashes it (argon2id,
                                  argon2-cffi's defaults) in the loop's default thread pool, INSERT
                                  into ih_user_profile, a session SETEX and its cookie.
anything else                     a JSON 404 (the loop-lag probe's target).

--curl --uvloop make it (c+), the honest peer: the same handler with the HTTP client our server
uses (CurlAsyncHTTPClient: libcurl, connections kept alive to the provider) on uvloop.

Logging as `tornado.options.parse_command_line()` sets it up: one access line per request.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime
import hashlib
import io
import json
import logging
import random
import re
import secrets

import aiomysql
import argon2
import pymysql
import redis.asyncio as aioredis
import tornado.web
import uvloop
from captcha.image import ImageCaptcha
from tornado.httpclient import AsyncHTTPClient
from tornado.ioloop import IOLoop

ACCOUNT_SID = "8aaf0708a2b3c4d5e6f7a8b9c0d1e2f3"
AUTH_TOKEN = "sandbox0token0000000000000000000a"
APP_ID = "8aaf0708app0000000000000000000ab"
CHINA_TIME = datetime.timezone(datetime.timedelta(hours=8))
ALPHABET = "ACEFHJKMNPRTUVWXY34679"
HASHER = argon2.PasswordHasher()  # what our server hashes new passwords with


class Base(tornado.web.RequestHandler):
    def initialize(self, ctx: dict) -> None:
        self.ctx = ctx

    def reply(self, errno: str, errmsg: str) -> None:
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(json.dumps({"errno": errno, "errmsg": errmsg}, ensure_ascii=False))


class SmsHandler(Base):
    async def get(self, mobile: str) -> None:
        redis, pool, ctx = self.ctx["redis"], self.ctx["pool"], self.ctx
        image_code = self.get_query_argument("image_code", None)
        image_code_id = self.get_query_argument("image_code_id", None)
        if not (image_code and image_code_id):
            return self.reply("4103", "参数不完整")
        real = await redis.get(f"image_code:{image_code_id}")
        if real is None:
            return self.reply("4002", "图片验证码失效")
        await redis.delete(f"image_code:{image_code_id}")
        if real.lower() != image_code.lower():
            return self.reply("4004", "图片验证码错误")
        if await redis.get(f"send_sms_code_{mobile}") is not None:
            return self.reply("4201", "请求过于频繁,请60秒后重试")
        async with pool.acquire() as conn, conn.cursor() as cur:
            await cur.execute("SELECT 1 FROM ih_user_profile WHERE mobile = %s LIMIT 1", (mobile,))
            if await cur.fetchone() is not None:
                return self.reply("4003", "手机号已存在")
        code = f"{random.randint(0, 999999):06d}"
        await redis.setex(f"sms_code_{mobile}", 300, code)
        await redis.setex(f"send_sms_code_{mobile}", 60, 1)
        timestamp = datetime.datetime.now(CHINA_TIME).strftime("%Y%m%d%H%M%S")
        sig = hashlib.md5(f"{ACCOUNT_SID}{AUTH_TOKEN}{timestamp}".encode()).hexdigest().upper()
        auth = base64.b64encode(f"{ACCOUNT_SID}:{timestamp}".encode()).decode()
        body = json.dumps({"to": mobile, "appId": APP_ID, "templateId": "1", "datas": [code, "5"]})
        response = await AsyncHTTPClient().fetch(
            f"{ctx['ronglian_url']}/2013-12-26/Accounts/{ACCOUNT_SID}/SMS/TemplateSMS?sig={sig}",
            method="POST",
            body=body,
            headers={
                "Accept": "application/json",
                "Content-Type": "application/json;charset=utf-8",
                "Authorization": auth,
            },
            raise_error=False,
            request_timeout=5,
        )
        if response.code == 200 and json.loads(response.body).get("statusCode") == "000000":
            return self.reply("0", "发送成功")
        return self.reply("4301", "发送失败")


class RegisterHandler(Base):
    async def post(self) -> None:
        redis, pool = self.ctx["redis"], self.ctx["pool"]
        try:
            req = json.loads(self.request.body)
        except ValueError:
            return self.reply("4103", "参数错误")
        mobile, sms_code = req.get("mobile"), req.get("sms_code")
        password, password2 = req.get("password"), req.get("password2")
        if not all([mobile, sms_code, password, password2]):
            return self.reply("4103", "参数不完整")
        if not re.fullmatch(r"1[3-9]\d{9}", mobile) or password != password2:
            return self.reply("4103", "参数错误")
        real = await redis.get(f"sms_code_{mobile}")
        if real is None:
            return self.reply("4002", "短信验证码失效")
        await redis.delete(f"sms_code_{mobile}")
        if real != sms_code:
            return self.reply("4004", "短信验证码错误")
        password_hash = await IOLoop.current().run_in_executor(None, HASHER.hash, password)
        try:
            async with pool.acquire() as conn, conn.cursor() as cur:
                await cur.execute(
                    "INSERT INTO ih_user_profile (name, password_hash, mobile) VALUES (%s, %s, %s)",
                    (mobile, password_hash, mobile),
                )
                user_id = cur.lastrowid
        except pymysql.err.IntegrityError:
            return self.reply("4003", "手机号已存在")
        sid = secrets.token_urlsafe(24)
        session = {"user_id": user_id, "name": mobile, "mobile": mobile}
        await redis.setex(f"session:{sid}", 86400, json.dumps(session))
        self.set_cookie("session", sid, httponly=True)
        self.reply("0", "注册成功")


class InlineCaptchaHandler(Base):
    async def get(self, image_code_id: str) -> None:
        text = "".join(random.choice(ALPHABET) for _ in range(4))
        buffer = io.BytesIO()
        self.ctx["renderer"].generate_image(text).save(buffer, format="JPEG", quality=70)
        await self.ctx["redis"].setex(f"image_code:{image_code_id}", 180, text)
        self.set_header("Content-Type", "image/jpeg")
        self.finish(buffer.getvalue())


class NotFound(Base):
    def prepare(self) -> None:
        self.set_status(404)
        self.reply("4002", "接口不存在")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--mysql-port", type=int, required=True)
    parser.add_argument("--ronglian-url", required=True)
    parser.add_argument("--max-clients", type=int, default=256)
    parser.add_argument("--curl", action="store_true", help="CurlAsyncHTTPClient (keep-alive)")
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop")
    return parser.parse_args()


async def serve(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.INFO, format="[%(levelname)1.1s %(asctime)s] %(message)s")
    # The default client class (simple_httpclient: a new connection per request) unless
    # --curl; either way its queue limit is raised from 10 to the same bound our server
    # gets, or it would cap at 10 sends in flight.
    client = "tornado.curl_httpclient.CurlAsyncHTTPClient" if args.curl else None
    AsyncHTTPClient.configure(client, max_clients=args.max_clients)
    pool = await aiomysql.create_pool(
        host="127.0.0.1",
        port=args.mysql_port,
        user="smsreg",
        password="smsreg",
        db="smsreg",
        minsize=1,
        maxsize=20,
        autocommit=True,
        charset="utf8mb4",
    )
    ctx = {
        # redis-py 8 bounds the async pool (and raises when it is full): same bound as ours.
        "redis": aioredis.Redis.from_url(
            args.redis_url, decode_responses=True, max_connections=256
        ),
        "pool": pool,
        "ronglian_url": args.ronglian_url,
        "renderer": ImageCaptcha(width=160, height=60),
    }
    app = tornado.web.Application(
        [
            (r"/api/v1\.0/sms_codes/(1[3-9]\d{9})", SmsHandler, {"ctx": ctx}),
            (r"/api/v1\.0/image_codes/([A-Za-z0-9-]{1,64})", InlineCaptchaHandler, {"ctx": ctx}),
            (r"/api/v1\.0/users", RegisterHandler, {"ctx": ctx}),
        ],
        default_handler_class=NotFound,
        default_handler_args={"ctx": ctx},
    )
    app.listen(args.port, "127.0.0.1")
    await asyncio.Event().wait()


if __name__ == "__main__":
    options = parse_args()
    (uvloop.run if options.uvloop else asyncio.run)(serve(options))
