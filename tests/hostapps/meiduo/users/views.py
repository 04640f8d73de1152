"""meiduo's users/views.py for a login (LoginView, LogoutView, UserInfoView), plus a
CSRF-protected form and the test-only routes. Pages are tiny inline HTML instead of meiduo's
Jinja2 templates; what a login does to the session and the cookies is meiduo's."""

import re

from django import http
from django.contrib.auth import authenticate, hashers, login, logout
from django.contrib.auth.mixins import LoginRequiredMixin
from django.middleware.csrf import get_token
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.html import escape
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from users.models import User
from users.utils import get_user_by_account


def login_page(request, account_errmsg=""):
    error = f'<p class="error">{escape(account_errmsg)}</p>' if account_errmsg else ""
    return http.HttpResponse(
        f'<form method="post">{error}'
        f'<input type="hidden" name="csrfmiddlewaretoken" value="{get_token(request)}">'
        '<input name="username"><input type="password" name="password">'
        '<input type="checkbox" name="remembered"><button type="submit">登录</button></form>'
    )


def favicon(request):
    """meiduo's static/favicon.ico (an empty one here): browsers ask for it on every page."""
    return http.HttpResponse(status=204, content_type="image/x-icon")


class IndexView(View):
    """contents:index: index.js greets the `username` cookie (seed-systems.md §2.4)."""

    def get(self, request):
        username = request.COOKIES.get("username")
        greeting = f'欢迎您：<em id="username">{escape(username)}</em>' if username else "请登录"
        return http.HttpResponse(f"<!DOCTYPE html><title>美多商城</title><p>{greeting}</p>")


# register.js's requests (seed-systems.md §2.4) without Vue and axios, which are not here:
# the CAPTCHA image of a client-made uuid, GET /sms_codes/<mobile>/ on 获取短信验证码.
REGISTER_JS = """
function generateUUID() {  // common.js
  let d = new Date().getTime();
  if (window.performance && typeof window.performance.now === "function") d += performance.now();
  return "xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx".replace(/[xy]/g, (c) => {
    const r = (d + Math.random() * 16) % 16 | 0;
    d = Math.floor(d / 16);
    return (c === "x" ? r : (r & 0x3) | 0x8).toString(16);
  });
}
const uuid = generateUUID();
const image = document.querySelector(".pic_code");
image.src = "/image_codes/" + uuid + "/";
document.querySelector(".get_msg_code").addEventListener("click", async (event) => {
  event.preventDefault();
  const tip = event.target;
  const mobile = document.getElementById("phone").value;
  const imageCode = document.getElementById("pic_code").value;
  const query = "?image_code=" + encodeURIComponent(imageCode) + "&uuid=" + uuid;
  const answer = await (await fetch("/sms_codes/" + mobile + "/" + query)).json();
  tip.textContent = answer.code === "0" ? "60秒" : answer.errmsg;
});
"""


class RegisterView(View):
    """users:register's page: meiduo's register.html form, which posts back to /register/
    (to our server behind nginx: only GET reaches this view there)."""

    def get(self, request):
        fields = "".join(
            f'<label>{label}<input type="{kind}" name="{name}" id="{id_}"></label>'
            for label, kind, name, id_ in (
                ("用户名", "text", "username", "user_name"),
                ("密码", "password", "password", "pwd"),
                ("确认密码", "password", "password2", "cpwd"),
                ("手机号", "text", "mobile", "phone"),
                ("图形验证码", "text", "image_code", "pic_code"),
            )
        )
        return http.HttpResponse(
            "<!DOCTYPE html><title>美多商城-注册</title>"
            '<form method="post" class="register_form">'
            f'<input type="hidden" name="csrfmiddlewaretoken" value="{get_token(request)}">'
            f'{fields}<img class="pic_code" alt="图形验证码">'
            '<label>短信验证码<input type="text" name="sms_code" id="msg_code"></label>'
            '<a class="get_msg_code" href="#">获取短信验证码</a>'
            '<label><input type="checkbox" name="allow" id="allow">同意用户协议</label>'
            '<input type="submit" value="注 册"></form>'
            f"<script>{REGISTER_JS}</script>"
        )


class LoginView(View):
    def get(self, request):
        return login_page(request)

    def post(self, request):
        username = request.POST.get("username")
        password = request.POST.get("password")
        remembered = request.POST.get("remembered")
        if not all([username, password]):
            return http.HttpResponseForbidden("缺少必传参数")
        if not re.match(r"^[a-zA-Z0-9_-]{5,20}$", username):
            return http.HttpResponseForbidden("请输入正确的用户名或手机号")
        if not re.match(r"^[0-9A-Za-z]{8,20}$", password):
            return http.HttpResponseForbidden("密码最少8位，最长20位")
        user = authenticate(request, username=username, password=password)
        if user is None:
            return login_page(request, account_errmsg="用户名或密码错误")
        login(request, user)
        # Not "remembered": the session ends with the browser; else Django's 2 weeks.
        request.session.set_expiry(None if remembered == "on" else 0)
        response = redirect(request.GET.get("next") or reverse("info"))
        response.set_cookie("username", user.username, max_age=3600 * 24 * 15)
        return response


class LogoutView(View):
    def get(self, request):
        logout(request)
        response = redirect(reverse("login"))
        response.delete_cookie("username")
        return response


class UserInfoView(LoginRequiredMixin, View):
    def get(self, request):
        user = request.user
        return http.JsonResponse(
            {
                "code": "0",
                "errmsg": "OK",
                "id": user.id,
                "username": user.username,
                "mobile": user.mobile,
                "email_active": user.email_active,
            }
        )


class FormView(View):
    def get(self, request):
        return http.HttpResponse(
            '<form method="post">'
            f'<input type="hidden" name="csrfmiddlewaretoken" value="{get_token(request)}">'
            '<button type="submit">提交</button></form>'
        )

    def post(self, request):
        return http.HttpResponse("ok", content_type="text/plain")


@csrf_exempt
def create_user(request):
    """Test-only: a user through the ORM (create_user hashes with PASSWORD_HASHERS[0])."""
    if request.method != "POST":
        return http.HttpResponseNotAllowed(["POST"])
    user = User.objects.create_user(
        username=request.POST["username"],
        password=request.POST["password"],
        mobile=request.POST["mobile"],
    )
    return http.JsonResponse({"code": "0", "errmsg": "OK", "id": user.id})


def check_password(request):
    """Test-only: whether Django accepts the password for the user (username or mobile), and
    whether its next login would rehash it with PASSWORD_HASHERS[0] (`must_update`). The stored
    hash stays as it is: user.check_password() and so authenticate() would save the rehash."""
    user = get_user_by_account(request.GET.get("username", ""))
    if user is None:
        return http.JsonResponse({"code": "4004", "errmsg": "用户名错误"})
    rehash = []  # Django calls the setter only for a right password that it would rehash
    ok = hashers.check_password(request.GET.get("password", ""), user.password, rehash.append)
    return http.JsonResponse(
        {"code": "0", "errmsg": "OK", "ok": ok, "hash": user.password, "must_update": bool(rehash)}
    )
