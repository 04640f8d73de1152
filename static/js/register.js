/* register.html: the SMS-code fields (static/js/smscode.js: CAPTCHA, countdown, receipt, voice
   offer, proof of work), the consent checkbox (templates/consent_field.html) and registration. */
"use strict";

(() => {
  const { RET, MOBILE_RE, SMS_CODE_RE, api, byId } = Ihome;
  const PASSWORD_MIN = 6;
  const PASSWORD_MAX = 64;

  const form = byId("register-form");
  const submit = Ihome.submitButton(byId("register-submit"), "注册中…");
  const formError = byId("form-err");
  const errors = Ihome.fieldErrors(form, [
    "mobile",
    "imagecode",
    "phonecode",
    "password",
    "password2",
    "agree",
  ]);
  const sms = Ihome.smsCode.attach({
    errors,
    purpose: "register",
    refusals: { [RET.DATAEXIST]: "该手机号已注册，请直接登录" },
  });

  // --- registration ------------------------------------------------------------------------

  function validate(values) {
    const length = [...values.password].length; // code points, like the server's len()
    let passwordError = "";
    if (!values.password) passwordError = "请输入密码";
    else if (length < PASSWORD_MIN || length > PASSWORD_MAX) passwordError = "密码长度应为6-64位";
    let password2Error = "";
    if (!values.password2) password2Error = "请再次输入密码";
    else if (values.password2 !== values.password) password2Error = "两次密码不一致";
    return {
      mobile: MOBILE_RE.test(values.mobile) ? "" : "请输入正确的11位手机号",
      phonecode: SMS_CODE_RE.test(values.sms_code) ? "" : "请输入6位数字短信验证码",
      password: passwordError,
      password2: password2Error,
      agree: values.agree ? "" : "请阅读并同意用户协议和隐私政策",
    };
  }

  // Which field a PARAMERR of the users endpoint is about, from its message.
  function registerParamField(errmsg) {
    if (errmsg.includes("协议")) return "agree";
    if (errmsg.includes("两次密码")) return "password2";
    if (errmsg.includes("密码")) return "password";
    if (errmsg.includes("手机号")) return "mobile";
    if (errmsg.includes("验证码")) return "phonecode";
    return null;
  }

  function fieldOrFormError(field, message) {
    if (field) {
      errors.set(field, message);
      byId(field).focus();
    } else {
      formError.textContent = message;
    }
  }

  Ihome.onSubmit(form, submit, formError, async () => {
    const password = byId("password").value;
    const values = {
      ...sms.values(),
      password,
      password2: byId("password2").value,
      agree: byId("agree").checked, // our page always sends agree: the server requires true
    };
    if (errors.show(validate(values))) return;

    const resp = await sms.submit(submit, "POST", "/api/v1.0/users", values);
    if (!resp) return;
    switch (resp.errno) {
      case RET.OK:
        window.location.assign("/");
        return;
      case RET.DATAEXIST:
        fieldOrFormError("mobile", "该手机号已注册，请直接登录");
        return;
      case RET.PARAMERR:
        fieldOrFormError(registerParamField(resp.errmsg), resp.errmsg);
        return;
      default:
        fieldOrFormError(null, resp.errmsg || "注册失败，请稍后重试");
    }
  });
})();
