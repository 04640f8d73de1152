/* login.html, second tab: 短信登录 — mobile, CAPTCHA, a login code → a session, the index.
   Also switches between the two tabs (keyboard: Tab to a tab, Enter/Space or ←/→). */
"use strict";

(() => {
  const { RET, MOBILE_RE, SMS_CODE_RE, api, byId } = Ihome;
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
  const errors = Ihome.fieldErrors(form, [
    "sms-mobile",
    "sms-imagecode",
    "sms-phonecode",
    "sms-agree",
  ]);
  const submit = Ihome.submitButton(byId("sms-login-submit"), "登录中…");
  const formError = byId("sms-form-err");
  const sms = Ihome.smsCode.attach({
    prefix: "sms-",
    errors,
    purpose: "login",
    refusals: { [RET.USERERR]: "该手机号尚未注册，请先注册" },
  });

  Ihome.onSubmit(form, submit, formError, async () => {
    // A new number is registered by this login: the server asks for the consent then.
    const values = { ...sms.values(), agree: byId("sms-agree").checked };
    const invalid = errors.show({
      "sms-mobile": MOBILE_RE.test(values.mobile) ? "" : "请输入正确的11位手机号",
      "sms-phonecode": SMS_CODE_RE.test(values.sms_code) ? "" : "请输入6位数字短信验证码",
    });
    if (invalid) return;

    const resp = await sms.submit(submit, "POST", "/api/v1.0/sessions", values);
    if (!resp) return;
    if (resp.errno === RET.OK) {
      window.location.assign("/");
    } else if (resp.errmsg.includes("协议")) {
      errors.set("sms-agree", resp.errmsg);
      byId("sms-agree").focus();
    } else if (resp.errno === RET.USERERR || resp.errmsg.includes("手机号")) {
      errors.set("sms-mobile", resp.errmsg);
      byId("sms-mobile").focus();
    } else {
      // REQERR carries its own "retry in N seconds" (or asks for the CAPTCHA of the
      // password tab's throttle, which this tab does not show: the message says what to do).
      formError.textContent = resp.errmsg || "登录失败，请稍后重试";
    }
  });
})();
