/* login.html: mobile + password (+ a CAPTCHA when the server asks) → a session, the index. */
"use strict";

(() => {
  const { RET, MOBILE_RE, api, byId, mobileOf } = Ihome;
  const form = byId("login-form");
  const mobileInput = byId("mobile");
  const passwordInput = byId("password");
  const submit = Ihome.submitButton(byId("login-submit"), "登录中…");
  const formError = byId("form-err");
  const captchaField = byId("login-captcha");
  const imageCodeInput = byId("imagecode");
  const errors = Ihome.fieldErrors(form, ["mobile", "password", "imagecode"]);
  // The CAPTCHA (static/js/smscode.js), shown once an account has had too many failed logins.
  const captcha = Ihome.captcha("", errors);

  function showCaptcha(message) {
    captchaField.hidden = false;
    captcha.renew();
    errors.set("imagecode", message);
    imageCodeInput.focus();
  }

  Ihome.onSubmit(form, submit, formError, async () => {
    const mobile = mobileOf(mobileInput.value);
    const password = passwordInput.value;
    const withCaptcha = !captchaField.hidden;
    const imageCode = imageCodeInput.value.trim();
    const invalid = errors.show({
      mobile: MOBILE_RE.test(mobile) ? "" : "请输入正确的11位手机号",
      password: password ? "" : "请输入密码",
      imagecode: withCaptcha && !imageCode ? "请输入图片验证码" : "",
    });
    if (invalid) return;

    submit.start();
    const body = { mobile, password };
    if (withCaptcha) Object.assign(body, { image_code: imageCode, image_code_id: captcha.id });
    const resp = await api("POST", "/api/v1.0/sessions", body);
    if (resp.errno === RET.OK) {
      window.location.assign("/");
      return;
    }
    submit.reset();
    if (resp.errno === RET.REQERR && resp.data && resp.data.reason === "captcha_required") {
      showCaptcha(resp.errmsg);
      return;
    }
    // A CAPTCHA is good for one attempt, right or wrong: the next one needs a new image.
    if (withCaptcha) captcha.renew();
    if (resp.errmsg && resp.errmsg.includes("图片验证码")) {
      errors.set("imagecode", resp.errmsg);
      imageCodeInput.focus();
      return;
    }
    if (resp.errno === RET.PARAMERR && resp.errmsg.includes("手机号")) {
      errors.set("mobile", resp.errmsg);
      mobileInput.focus();
      return;
    }
    // Wrong mobile or password is one message on purpose (no hint which one was wrong),
    // named as this form names its fields (the API says 用户名或密码错误, as ihome);
    // REQERR carries its own "retry in N seconds".
    formError.textContent =
      resp.errno === RET.DATAERR ? "手机号或密码错误" : resp.errmsg || "登录失败，请稍后重试";
    if (resp.errno === RET.DATAERR) {
      passwordInput.value = "";
      passwordInput.focus();
    }
  });
})();
