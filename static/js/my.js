/* my.html: the profile with the masked mobile, 更换手机号 (code to the new number), 退出. */
"use strict";

(() => {
  const { RET, MOBILE_RE, api, maskMobile } = Ihome;
  const SMS_CODE_RE = /^[0-9]{6}$/;
  const byId = (id) => document.getElementById(id);
  const form = byId("change-form");
  const errors = Ihome.fieldErrors(form, ["mobile", "imagecode", "phonecode"]);
  const status = byId("my-status");
  const submitButton = byId("change-submit");
  const formError = byId("form-err");
  const logoutButton = byId("logout");
  let sms = null;
  let submitting = false;

  function showProfile(user) {
    byId("profile-name").textContent = user.name; // textContent: data, never markup
    byId("profile-mobile").textContent = maskMobile(user.mobile);
    byId("profile").hidden = false;
    form.hidden = false;
    logoutButton.hidden = false;
    status.textContent = "";
  }

  async function loadProfile() {
    const resp = await api("GET", "/api/v1.0/user");
    if (resp.errno === RET.SESSIONERR) {
      status.textContent = "";
      byId("my-guest").hidden = false;
      return;
    }
    if (resp.errno !== RET.OK) {
      status.textContent = resp.errmsg || "加载失败，请稍后重试";
      return;
    }
    showProfile(resp.data);
    if (!sms) {
      sms = Ihome.smsCode.attach({
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
        purpose: "change_mobile",
        refusals: {
          [RET.DATAEXIST]: "该手机号已被使用",
          [RET.SESSIONERR]: "登录已过期，请重新登录",
        },
      });
    }
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (submitting) return;
    formError.textContent = "";
    const values = { mobile: byId("mobile").value.trim(), sms_code: byId("phonecode").value.trim() };
    const invalid = errors.show({
      mobile: MOBILE_RE.test(values.mobile) ? "" : "请输入正确的11位手机号",
      phonecode: SMS_CODE_RE.test(values.sms_code) ? "" : "请输入6位数字短信验证码",
    });
    if (invalid) return;

    submitting = true;
    submitButton.disabled = true;
    const resp = await api("PUT", "/api/v1.0/user/mobile", values);
    submitting = false;
    submitButton.disabled = false;
    if (resp.errno === RET.OK) {
      sms.finished();
      form.reset();
      showProfile(resp.data);
      status.textContent = `手机号已更换为 ${maskMobile(resp.data.mobile)}`;
      status.focus();
      return;
    }
    if (resp.errno === RET.NODATA || resp.errno === RET.DATAERR) {
      errors.set("phonecode", resp.errmsg);
      byId("phonecode").focus();
    } else if (resp.errno === RET.DATAEXIST || resp.errmsg.includes("手机号")) {
      errors.set("mobile", resp.errno === RET.DATAEXIST ? "该手机号已被使用" : resp.errmsg);
      byId("mobile").focus();
    } else if (resp.errno === RET.SESSIONERR) {
      formError.textContent = "登录已过期，请重新登录";
    } else {
      formError.textContent = resp.errmsg || "更换失败，请稍后重试";
    }
  });

  logoutButton.addEventListener("click", async () => {
    logoutButton.disabled = true;
    const resp = await api("DELETE", "/api/v1.0/session");
    logoutButton.disabled = false;
    if (resp.errno === RET.OK) window.location.assign("/");
    else formError.textContent = resp.errmsg || "退出失败，请稍后重试";
  });

  loadProfile();
  window.addEventListener("pageshow", (event) => {
    if (event.persisted) loadProfile();
  });
})();
