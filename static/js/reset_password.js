/* reset_password.html: a reset_password code, a new password twice → logged in, the index. */
"use strict";

(() => {
  const { RET, MOBILE_RE, api } = Ihome;
  const SMS_CODE_RE = /^[0-9]{6}$/;
  const form = document.getElementById("reset-form");
  const byId = (id) => document.getElementById(id);
  const errors = Ihome.fieldErrors(form, ["mobile", "imagecode", "phonecode", "password", "password2"]);
  const submitButton = byId("reset-submit");
  const formError = byId("form-err");
  const sms = Ihome.smsCode.attach({
    el: {
      mobile: byId("mobile"),
      imageCode: byId("imagecode"),
      phoneCode: byId("phonecode"),
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
    purpose: "reset_password",
    refusals: { [RET.USERERR]: "该手机号尚未注册" },
  });
  let submitting = false;

  function resetSubmit() {
    submitting = false;
    submitButton.disabled = false;
    submitButton.textContent = "重置密码";
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (submitting) return;
    formError.textContent = "";
    const values = {
      mobile: byId("mobile").value.trim(),
      sms_code: byId("phonecode").value.trim(),
      password: byId("password").value,
      password2: byId("password2").value,
    };
    const length = [...values.password].length; // code points, like the server's len()
    const invalid = errors.show({
      mobile: MOBILE_RE.test(values.mobile) ? "" : "请输入正确的11位手机号",
      phonecode: SMS_CODE_RE.test(values.sms_code) ? "" : "请输入6位数字短信验证码",
      password: length >= 6 && length <= 64 ? "" : "密码长度应为6-64位",
      password2: values.password2 === values.password ? "" : "两次密码不一致",
    });
    if (invalid) return;

    submitting = true;
    submitButton.disabled = true;
    submitButton.textContent = "提交中…";
    const resp = await api("POST", "/api/v1.0/password_reset", values);
    if (resp.errno === RET.OK) {
      sms.finished();
      window.location.assign("/");
      return;
    }
    resetSubmit();
    if (resp.errno === RET.NODATA || resp.errno === RET.DATAERR) {
      errors.set("phonecode", resp.errmsg);
      byId("phonecode").focus();
    } else if (resp.errno === RET.USERERR || resp.errmsg.includes("手机号")) {
      errors.set("mobile", resp.errmsg);
      byId("mobile").focus();
    } else if (resp.errno === RET.PARAMERR && resp.errmsg.includes("密码")) {
      const field = resp.errmsg.includes("两次") ? "password2" : "password";
      errors.set(field, resp.errmsg);
      byId(field).focus();
    } else {
      formError.textContent = resp.errmsg || "重置失败，请稍后重试";
    }
  });

  window.addEventListener("pageshow", (event) => {
    if (!event.persisted) return;
    resetSubmit();
    sms.newCaptcha();
    sms.render();
  });
})();
