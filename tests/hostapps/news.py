"""news (新经资讯, information) as a host app: the parts of the tutorial's Flask app that a login
touches, built as info/__init__.py builds them (seed-systems.md §3) with today's Flask-Session,
Flask-WTF and Flask-SQLAlchemy. Every route is under /host/, but the index page with its
register modal and the favicon (README.md)."""

from __future__ import annotations

import functools
from datetime import datetime

from flask import Flask, g, jsonify, request, session
from flask_session import Session
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect
from flask_wtf.csrf import generate_csrf
from markupsafe import escape
from werkzeug.security import check_password_hash, generate_password_hash

from tests.hostapps.flask_common import (
    RET,
    TEST_ENDPOINTS,
    WERKZEUG_METHOD,
    base_config,
    mobile_and_password,
    register_test_routes,
    serve_favicon,
)

db = SQLAlchemy()
csrf = CSRFProtect()


class BaseModel:
    create_time = db.Column(db.DateTime, default=datetime.now)
    update_time = db.Column(db.DateTime, default=datetime.now, onupdate=datetime.now)


class User(BaseModel, db.Model):
    __tablename__ = "info_user"

    id = db.Column(db.Integer, primary_key=True)
    nick_name = db.Column(db.String(32), unique=True, nullable=False)
    password_hash = db.Column(db.String(128), nullable=False)
    mobile = db.Column(db.String(11), unique=True, nullable=False)
    avatar_url = db.Column(db.String(256))
    last_login = db.Column(db.DateTime, default=datetime.now)
    is_admin = db.Column(db.Boolean, default=False)
    signature = db.Column(db.String(512))
    gender = db.Column(db.Enum("MAN", "WOMAN"), default="MAN")

    @property
    def password(self):
        raise AttributeError("当前属性不允许读取")

    @password.setter
    def password(self, value: str) -> None:
        # flask_common.WERKZEUG_METHOD: the tutorials' Werkzeug default.
        self.password_hash = generate_password_hash(value, method=WERKZEUG_METHOD)

    def check_password(self, value: str) -> bool:
        return check_password_hash(self.password_hash, value)

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "nick_name": self.nick_name,
            "avatar_url": self.avatar_url or "",
            "mobile": self.mobile,
            "gender": self.gender or "MAN",
            "signature": self.signature or "",
        }


def user_login_data(view):
    """info/utils/common.py: g.user from session["user_id"], or None."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        user_id = session.get("user_id")
        g.user = db.session.get(User, user_id) if user_id is not None else None
        return view(*args, **kwargs)

    return wrapper


# main.js's register and logout (seed-systems.md §3.5) without jQuery, which is not here: the
# same requests, an error shown where the template has a slot instead of alert().
MAIN_JS = """
function getCookie(name) {
  const pair = document.cookie.split("; ").find((item) => item.startsWith(name + "="));
  return pair ? pair.slice(name.length + 1) : undefined;
}
function generateUUID() {
  let d = new Date().getTime();
  if (window.performance && typeof window.performance.now === "function") d += performance.now();
  return "xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx".replace(/[xy]/g, (c) => {
    const r = (d + Math.random() * 16) % 16 | 0;
    d = Math.floor(d / 16);
    return (c === "x" ? r : (r & 0x3) | 0x8).toString(16);
  });
}
let imageCodeId = "";
function generateImageCode() {
  imageCodeId = generateUUID();
  document.querySelector(".get_pic_code").src = "/passport/image_code?imageCodeId=" + imageCodeId;
}
async function post(url, body) {
  const answer = await fetch(url, {
    method: "POST",
    headers: {"Content-Type": "application/json", "X-CSRFToken": getCookie("csrf_token")},
    body: JSON.stringify(body),
  });
  return answer.json();
}
function on(selector, handler) {
  const element = document.querySelector(selector);
  if (element) element.addEventListener("click", (event) => { event.preventDefault(); handler(); });
}
on(".register_btn", () => {
  document.querySelector(".register_form_con").hidden = false;
  generateImageCode();
});
on(".get_code", async () => {
  const answer = await post("/passport/sms_code", {
    mobile: document.getElementById("register_mobile").value,
    image_code: document.getElementById("imagecode").value,
    image_code_id: imageCodeId,
  });
  document.querySelector(".get_code").textContent = answer.errno === "0" ? "60秒" : answer.errmsg;
});
document.querySelector(".register_form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const answer = await post("/passport/register", {
    mobile: document.getElementById("register_mobile").value,
    smscode: document.getElementById("smscode").value,
    password: document.getElementById("register_password").value,
  });
  if (answer.errno === "0") location.reload();
  else document.getElementById("register-password-err").textContent = answer.errmsg;
});
on(".logout", async () => {
  await fetch("/passport/logout");
  location.reload();
});
"""
REGISTER_MODAL = (
    '<div class="register_form_con" hidden><form class="register_form">'
    '<input id="register_mobile" placeholder="手机号">'
    '<input id="imagecode" placeholder="图形验证码"><img class="get_pic_code" alt="图形验证码">'
    '<input id="smscode" placeholder="短信验证码"><a class="get_code" href="#">点击获取验证码</a>'
    '<input type="password" id="register_password" placeholder="密码">'
    '<div id="register-password-err"></div><button type="submit">立即注册</button></form></div>'
)


def create_app() -> Flask:
    app = Flask(__name__)
    app.config.update(base_config(), SESSION_PERMANENT=False, PERMANENT_SESSION_LIFETIME=86400 * 2)
    db.init_app(app)
    csrf.init_app(app)
    Session(app)

    @app.after_request
    def after_request(response):
        """info/__init__.py: the csrf_token cookie on every response (but the test-only
        routes' and the favicon's, which leave no session behind)."""
        if request.endpoint not in TEST_ENDPOINTS:
            response.set_cookie("csrf_token", generate_csrf())
        return response

    @app.get("/")
    @user_login_data
    def index():
        """news/index.html: base.html's header shows data.user's nick_name and 退出, or the
        注册 and 登录 buttons; its register modal and main.js post to /passport/ (ours behind
        nginx)."""
        if g.user is not None:
            header = f'<span id="nick_name">{escape(g.user.nick_name)}</span>'
            header += '<a class="logout" href="#">退出</a>'
        else:
            header = '<a class="register_btn" href="#">注册</a>'
        return (
            f"<!DOCTYPE html><title>新经资讯</title><div class='header'>{header}</div>"
            f"{REGISTER_MODAL}<script>{MAIN_JS}</script>"
        )

    @app.get("/host/whoami")
    @user_login_data
    def whoami():
        if g.user is None:
            return jsonify(errno=RET.SESSIONERR, errmsg="用户未登录")
        return jsonify(
            errno=RET.OK,
            errmsg="OK",
            data={
                "session": {
                    "user_id": session.get("user_id"),
                    "nick_name": session.get("nick_name"),
                    "mobile": session.get("mobile"),
                },
                "user": g.user.to_dict(),
            },
        )

    @app.post("/host/login")
    def login():
        """passport/views.py login()."""
        mobile, password = mobile_and_password(request)
        if not all([mobile, password]):
            return jsonify(errno=RET.PARAMERR, errmsg="参数错误")
        user = User.query.filter_by(mobile=mobile).first()
        if user is None:
            return jsonify(errno=RET.NODATA, errmsg="用户不存在")
        if not user.check_password(password):
            return jsonify(errno=RET.PWDERR, errmsg="用户名或者密码错误")
        session["user_id"] = user.id
        session["mobile"] = user.mobile
        session["nick_name"] = user.nick_name
        user.last_login = datetime.now()
        db.session.commit()
        return jsonify(errno=RET.OK, errmsg="登录成功")

    @app.route("/host/logout", methods=["GET", "POST"])
    def logout():
        """passport/views.py logout(): pops the login keys, keeps the CSRF token."""
        for key in ("user_id", "mobile", "nick_name", "is_admin"):
            session.pop(key, None)
        return jsonify(errno=RET.OK, errmsg="退出成功")

    @app.route("/host/form", methods=["GET", "POST"])
    def form():
        """GET: a page (after_request sets the csrf_token cookie); POST: reaches here only
        past CSRFProtect."""
        if request.method == "POST":
            return "ok"
        return (
            '<form method="post" action="/host/form">'
            f'<input type="hidden" name="csrf_token" value="{generate_csrf()}">'
            '<button type="submit">提交</button></form>'
        )

    serve_favicon(app)
    register_test_routes(app, db, csrf, User, "nick_name")
    with app.app_context():
        db.create_all()
    return app
