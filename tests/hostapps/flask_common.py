"""What the two Flask host apps (ihome, news) share: their configuration from the environment
the harness sets (HOSTAPP_*), the RET codes and the test-only routes, each built the way the
tutorials build theirs (Flask-Session on Redis, Flask-WTF's CSRFProtect, Flask-SQLAlchemy)."""

from __future__ import annotations

import os

import redis
from flask import Flask, jsonify, request

# The hash the tutorials' Werkzeug (0.12-0.14) wrote by default. Today's default (scrypt, 162
# characters) does not fit their String(128) column; today's PBKDF2 default (1,000,000 rounds)
# would cost the tests a second per hash.
WERKZEUG_METHOD = "pbkdf2:sha256:50000"


class RET:
    """ihome/utils/response_code.py and info/utils/response_code.py (codes are strings)."""

    OK = "0"
    DBERR = "4001"
    NODATA = "4002"
    DATAERR = "4004"
    SESSIONERR = "4101"
    PARAMERR = "4103"
    PWDERR = "4106"


def base_config() -> dict[str, object]:
    """The settings ihome's and news's config.py share, pointed at the harness's processes."""
    env = os.environ
    database_uri = (
        f"mysql+pymysql://{env['HOSTAPP_MYSQL_USER']}:{env['HOSTAPP_MYSQL_PASSWORD']}"
        f"@127.0.0.1:{env['HOSTAPP_MYSQL_PORT']}/{env['HOSTAPP_MYSQL_DATABASE']}?charset=utf8mb4"
    )
    return {
        "SECRET_KEY": env["HOSTAPP_SECRET_KEY"],
        "SQLALCHEMY_DATABASE_URI": database_uri,
        "SQLALCHEMY_TRACK_MODIFICATIONS": False,
        "SESSION_TYPE": "redis",
        "SESSION_REDIS": redis.StrictRedis.from_url(env["HOSTAPP_REDIS_URL"]),
        "SESSION_USE_SIGNER": True,
    }


def mobile_and_password(request) -> tuple[str, str]:
    """The login fields from a JSON body (the tutorials' front-ends) or a form."""
    data = request.get_json(silent=True) or request.form
    # news's main.js sends the password as "passport" (seed-systems.md §3.2).
    return data.get("mobile", ""), data.get("password") or data.get("passport") or ""


# The routes whose answers leave no session behind (news sets no csrf_token cookie on them).
TEST_ENDPOINTS = {"create_user", "check_password", "favicon"}


def serve_favicon(app: Flask) -> None:
    """/favicon.ico, as the tutorials serve static/favicon.ico (an empty one here): browsers
    ask for it on every page, the JSON ones too."""

    @app.get("/favicon.ico")
    def favicon():
        return "", 204, {"Content-Type": "image/x-icon"}


def register_test_routes(app: Flask, db, csrf, user_model, name_field: str) -> None:
    """Test-only routes: create a user through the host's own ORM (its `password` setter, so
    the host's own hash), and ask the ORM whether a password is right (User.check_password)."""

    @app.post("/host/users")
    @csrf.exempt
    def create_user():
        data = request.get_json()
        user = user_model(mobile=data["mobile"], **{name_field: data.get("name") or data["mobile"]})
        user.password = data["password"]
        db.session.add(user)
        db.session.commit()
        return jsonify(errno=RET.OK, errmsg="OK", data={"user_id": user.id})

    @app.get("/host/check_password")
    def check_password():
        user = user_model.query.filter_by(mobile=request.args["mobile"]).first()
        if user is None:
            return jsonify(errno=RET.NODATA, errmsg="用户不存在")
        ok = user.check_password(request.args["password"])
        return jsonify(errno=RET.OK, errmsg="OK", data={"ok": ok, "hash": user.password_hash})
