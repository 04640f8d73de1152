/* login.html, second tab: 短信登录 — mobile, CAPTCHA, a login code → a session, the index.
   Also switches between the two tabs (keyboard: Tab to a tab, Enter/Space or ←/→). */
"use strict";

(() => {
  const { RET, MOBILE_RE, api } = Ihome;
  const SMS_CODE_RE = /^[0-9]{6}$/;
  const byId = (id) => document.getElementById(id);
  const tabs = [byId("tab-password"), byId("tab-sms")];
  const panels = [byId("panel-password"), byId("panel-sms")];

  function select(index, focus) {
    tabs.forEach((tab, i) => {
      const selected = i === index;
      tab.setAttribute("aria-selected", String(selected));
      tab.tabIndex = selected ? 0 : -1;
      panels[i].hidden = !selected;
    });
    if (focus) tabs[index].focus();
  }

  tabs.forEach((tab, i) => {
    tab.addEventListener("click", () => select(i, true));
    tab.addEventListener("keydown", (event) => {
      if (event.key === "ArrowRight" || event.key === "ArrowLeft") {
        event.preventDefault();
        select((i + 1) % tabs.length, true);
      }
    });
  });

  const form = byId("sms-login-form");
  const errors = Ihome.fieldErrors(form, ["sms-mobile", "sms-imagecode", "sms-phonecode"]);
  const submitButton = byId("sms-login-submit");
  const formError = byId("sms-form-err");
  const sms = Ihome.smsCode.attach({
    el: {
      mobile: byId("sms-mobile"),
      imageCode: byId("sms-imagecode"),
      phoneCode: byId("sms-phonecode"),
      captchaImg: byId("sms-captcha-img"),
      captchaRefresh: byId("sms-captcha-refresh"),
      audioLink: byId("sms-captcha-audio"),
      audioPlayer: byId("sms-captcha-player"),
      smsButton: byId("sms-send-sms"),
      smsStatus: byId("sms-phone-code-status"),
      voiceOffer: byId("sms-voice-offer"),
      voiceLink: byId("sms-send-voice"),
      powBox: byId("sms-pow-box"),
    },
    fields: { mobile: "sms-mobile", imagecode: "sms-imagecode", phonecode: "sms-phonecode" },
    errors,
    purpose: "login",
    refusals: { [RET.USERERR]: "该手机号尚未注册，请先注册" },
  });
  let submitting = false;

  function resetSubmit() {
    submitting = false;
    submitButton.disabled = false;
    submitButton.textContent = "登录";
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (submitting) return;
    formError.textContent = "";
    const mobile = byId("sms-mobile").value.trim();
    const smsCode = byId("sms-phonecode").value.trim();
    const invalid = errors.show({
      "sms-mobile": MOBILE_RE.test(mobile) ? "" : "请输入正确的11位手机号",
      "sms-phonecode": SMS_CODE_RE.test(smsCode) ? "" : "请输入6位数字短信验证码",
    });
    if (invalid) return;

    submitting = true;
    submitButton.disabled = true;
    submitButton.textContent = "登录中…";
    const resp = await api("POST", "/api/v1.0/sessions", { mobile, sms_code: smsCode });
    if (resp.errno === RET.OK) {
      sms.finished();
      window.location.assign("/");
      return;
    }
    resetSubmit();
    if (resp.errno === RET.NODATA || resp.errno === RET.DATAERR) {
      errors.set("sms-phonecode", resp.errmsg);
      byId("sms-phonecode").focus();
    } else if (resp.errno === RET.USERERR || resp.errmsg.includes("手机号")) {
      errors.set("sms-mobile", resp.errmsg);
      byId("sms-mobile").focus();
    } else {
      // REQERR carries its own "retry in N seconds" (or asks for the CAPTCHA of the
      // password tab's throttle, which this tab does not show: the message says what to do).
      formError.textContent = resp.errmsg || "登录失败，请稍后重试";
    }
  });

  window.addEventListener("pageshow", (event) => {
    if (!event.persisted) return;
    resetSubmit();
    sms.newCaptcha();
    sms.render();
  });
})();
