"""ihome (爱家租房) as a host app: the parts of the tutorial's Flask app that a login touches,
built as ihome builds them (seed-systems.md §1) with today's Flask-Session, Flask-WTF and
Flask-SQLAlchemy. Every route is under /host/ so that none collides with our server's, but the
index page and the favicon (README.md)."""

from __future__ import annotations

import functools
from datetime import datetime

from flask import Flask, g, jsonify, make_response, request, session
from flask_session import Session
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect
from flask_wtf.csrf import generate_csrf
from werkzeug.security import check_password_hash, generate_password_hash

from tests.hostapps.flask_common import (
    RET,
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
    __tablename__ = "ih_user_profile"

    id = db.Column(db.Integer, primary_key=True)
    name = db.Column(db.String(32), unique=True, nullable=False)
    password_hash = db.Column(db.String(128), nullable=False)
    mobile = db.Column(db.String(11), unique=True, nullable=False)
    real_name = db.Column(db.String(32))
    id_card = db.Column(db.String(20))
    avatar_url = db.Column(db.String(128))

    @property
    def password(self):
        raise AttributeError("这个属性只能设置，不能读取")

    @password.setter
    def password(self, value: str) -> None:
        # flask_common.WERKZEUG_METHOD: the tutorials' Werkzeug default.
        self.password_hash = generate_password_hash(value, method=WERKZEUG_METHOD)

    def check_password(self, value: str) -> bool:
        return check_password_hash(self.password_hash, value)

    def to_dict(self) -> dict[str, object]:
        return {
            "user_id": self.id,
            "name": self.name,
            "mobile": self.mobile,
            "avatar": self.avatar_url or "",
            "create_time": self.create_time.strftime("%Y-%m-%d %H:%M:%S"),
        }


def login_required(view):
    """ihome/utils/commons.py: 4101 without session["user_id"], else g.user_id."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        user_id = session.get("user_id")
        if user_id is None:
            return jsonify(errno=RET.SESSIONERR, errmsg="用户未登录")
        g.user_id = user_id
        return view(*args, **kwargs)

    return wrapper


def create_app() -> Flask:
    app = Flask(__name__)
    app.config.update(base_config(), PERMANENT_SESSION_LIFETIME=86400)
    db.init_app(app)
    Session(app)
    csrf.init_app(app)

    @app.get("/")
    def index():
        """web_html.py's /index.html (static; its index.js asks GET /api/v1.0/session, ours
        behind nginx), with the csrf_token cookie web_html.py sets on every page."""
        response = make_response("<!DOCTYPE html><title>爱家租房</title><h1>爱家租房</h1>")
        response.set_cookie("csrf_token", generate_csrf())
        return response

    @app.get("/host/whoami")
    @login_required
    def whoami():
        user = db.session.get(User, g.user_id)
        if user is None:
            return jsonify(errno=RET.NODATA, errmsg="用户不存在")
        return jsonify(
            errno=RET.OK,
            errmsg="OK",
            data={
                "session": {
                    "user_id": session.get("user_id"),
                    "name": session.get("name"),
                    "mobile": session.get("mobile"),
                },
                "user": user.to_dict(),
            },
        )

    @app.post("/host/login")
    def login():
        """passport.py login(), without the failure counter."""
        mobile, password = mobile_and_password(request)
        if not all([mobile, password]):
            return jsonify(errno=RET.PARAMERR, errmsg="参数不完整")
        user = User.query.filter_by(mobile=mobile).first()
        if user is None or not user.check_password(password):
            return jsonify(errno=RET.DATAERR, errmsg="用户名或密码错误")
        session["name"] = user.name
        session["mobile"] = user.mobile
        session["user_id"] = user.id
        return jsonify(errno=RET.OK, errmsg="登录成功")

    @app.route("/host/logout", methods=["GET", "POST"])
    def logout():
        """passport.py logout(): everything goes but the CSRF token."""
        csrf_token = session.get("csrf_token")
        session.clear()
        session["csrf_token"] = csrf_token
        return jsonify(errno=RET.OK, errmsg="OK")

    @app.route("/host/form", methods=["GET", "POST"])
    def form():
        """GET: a page, with the csrf_token cookie as web_html.py sets it on every page;
        POST: reaches here only past CSRFProtect."""
        if request.method == "POST":
            return "ok"
        token = generate_csrf()
        page = (
            '<form method="post" action="/host/form">'
            f'<input type="hidden" name="csrf_token" value="{token}">'
            '<button type="submit">提交</button></form>'
        )
        response = make_response(page)
        response.set_cookie("csrf_token", token)
        return response

    serve_favicon(app)
    register_test_routes(app, db, csrf, User, "name")
    with app.app_context():
        db.create_all()
    return app
