/* register.html: the SMS-code fields (static/js/smscode.js: CAPTCHA, countdown, receipt, voice
   offer, proof of work) and registration. */
"use strict";

(() => {
  const { RET, MOBILE_RE, api } = Ihome;
  const SMS_CODE_RE = /^[0-9]{6}$/;
  const PASSWORD_MIN = 6;
  const PASSWORD_MAX = 64;
  const byId = (id) => document.getElementById(id);

  const form = byId("register-form");
  const mobileInput = byId("mobile");
  const phoneCodeInput = byId("phonecode");
  const passwordInput = byId("password");
  const password2Input = byId("password2");
  const submitButton = byId("register-submit");
  const formError = byId("form-err");
  const errors = Ihome.fieldErrors(form, [
    "mobile",
    "imagecode",
    "phonecode",
    "password",
    "password2",
  ]);
  const sms = Ihome.smsCode.attach({
    el: {
      mobile: mobileInput,
      imageCode: byId("imagecode"),
      phoneCode: phoneCodeInput,
      captchaImg: byId("captcha-img"),
      captchaRefresh: byId("captcha-refresh"),
      audioLink: byId("captcha-audio"),
      audioPlayer: byId("captcha-player"),
      smsButton: byId("send-sms"),
      smsStatus: byId("phone-code-status"),
      voiceOffer: byId("voice-offer"),
      voiceLink: byId("send-voice"),
      powBox: byId("pow-box"),
    },
    fields: { mobile: "mobile", imagecode: "imagecode", phonecode: "phonecode" },
    errors,
    purpose: "register",
    refusals: { [RET.DATAEXIST]: "该手机号已注册，请直接登录" },
  });
  let submitting = false;

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
    };
  }

  // Which field a PARAMERR of the users endpoint is about, from its message.
  function registerParamField(errmsg) {
    if (errmsg.includes("两次密码")) return "password2";
    if (errmsg.includes("密码")) return "password";
    if (errmsg.includes("手机号")) return "mobile";
    if (errmsg.includes("验证码")) return "phonecode";
    return null;
  }

  function resetSubmit() {
    submitting = false;
    submitButton.disabled = false;
    submitButton.textContent = "注册";
  }

  function fieldOrFormError(field, message) {
    if (field) {
      errors.set(field, message);
      document.getElementById(field).focus();
    } else {
      formError.textContent = message;
    }
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (submitting) return;
    formError.textContent = "";
    const values = {
      mobile: mobileInput.value.trim(),
      sms_code: phoneCodeInput.value.trim(),
      password: passwordInput.value,
      password2: password2Input.value,
    };
    if (errors.show(validate(values))) return;

    submitting = true;
    submitButton.disabled = true;
    submitButton.textContent = "注册中…";
    const resp = await api("POST", "/api/v1.0/users", values);
    if (resp.errno === RET.OK) {
      sms.finished();
      window.location.assign("/");
      return;
    }
    resetSubmit();
    switch (resp.errno) {
      case RET.NODATA:
      case RET.DATAERR:
        fieldOrFormError("phonecode", resp.errmsg);
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

  // Back/forward cache: the page comes back as it was left, but its CAPTCHA may be used or
  // expired by now and a submit may have been in flight.
  window.addEventListener("pageshow", (event) => {
    if (!event.persisted) return;
    resetSubmit();
    sms.newCaptcha();
    sms.render();
  });
})();
