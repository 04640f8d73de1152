/* my.html: the profile with the masked mobile, 更换手机号 (code to the new number, plus the
   current password or a code sent to the current number), 修改密码 (the old password, the new
   one twice), 登录设备 (the account's sessions: end one, or all others), 退出. */
"use strict";

(() => {
  const { RET, MOBILE_RE, SMS_CODE_RE, api, byId, maskMobile } = Ihome;
  const form = byId("change-form");
  const errors = Ihome.fieldErrors(form, [
    "mobile",
    "imagecode",
    "phonecode",
    "password",
    "cur-imagecode",
    "cur-phonecode",
  ]);
  const status = byId("my-status");
  const submit = Ihome.submitButton(byId("change-submit"));
  const formError = byId("form-err");
  const logoutButton = byId("logout");
  const factorPassword = byId("factor-password");
  const factorCode = byId("factor-code");
  const currentSend = byId("cur-send-sms");
  const currentCaptcha = Ihome.captcha("cur-", errors);
  let currentMobile = "";
  let currentSendTimer = 0;
  let sms = null;

  function showProfile(user) {
    currentMobile = user.mobile;
    // textContent: data, never markup. A name that is the mobile is masked like the mobile.
    byId("profile-name").textContent = user.name === user.mobile ? maskMobile(user.name) : user.name;
    byId("profile-mobile").textContent = maskMobile(user.mobile);
    byId("profile").hidden = false;
    form.hidden = false;
    Ihome.myAccount.show();
    logoutButton.hidden = false;
    status.textContent = "";
    // The 注销 section (delete_account.js) appears with the profile.
    document.dispatchEvent(new CustomEvent("ihome-profile", { detail: user }));
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
        errors,
        purpose: "change_mobile",
        refusals: {
          [RET.DATAEXIST]: "该手机号已被使用",
          [RET.SESSIONERR]: "登录已过期，请重新登录",
        },
      });
    }
  }

  // The proof of the current factor: the password (default) or a code to the current number.
  function useCurrentCode(yes) {
    factorPassword.hidden = yes;
    factorCode.hidden = !yes;
    if (yes && !currentCaptcha.id) currentCaptcha.renew();
    byId(yes ? "cur-imagecode" : "password").focus();
  }

  byId("use-current-code").addEventListener("click", (event) => {
    event.preventDefault();
    useCurrentCode(true);
  });
  byId("use-password").addEventListener("click", (event) => {
    event.preventDefault();
    useCurrentCode(false);
  });

  // A confirm_mobile code: the server sends it to the account's own number (no mobile sent).
  async function sendCurrentCode() {
    const imageCode = byId("cur-imagecode").value.trim();
    byId("cur-phone-code-status").textContent = "";
    if (errors.show({ "cur-imagecode": imageCode ? "" : "请输入图片验证码" })) return;
    currentSend.disabled = true;
    const body = { image_code: imageCode, image_code_id: currentCaptcha.id, purpose: "confirm_mobile" };
    const resp = await api("POST", "/api/v1.0/sms_codes", body);
    if (resp.errno !== RET.PARAMERR && resp.errno !== "") currentCaptcha.renew(); // used up
    if (resp.errno === RET.OK) {
      byId("cur-phone-code-status").textContent = `验证码已发送至原手机号 ${maskMobile(currentMobile)}`;
      clearTimeout(currentSendTimer);
      currentSendTimer = setTimeout(() => {
        currentSend.disabled = false;
      }, (resp.data.retry_after || 60) * 1000);
      byId("cur-phonecode").focus();
      return;
    }
    currentSend.disabled = false;
    if (resp.errno === RET.NODATA || resp.errno === RET.DATAERR) {
      errors.set("cur-imagecode", resp.errmsg);
      byId("cur-imagecode").focus();
    } else {
      errors.note("cur-phonecode", resp.errmsg || "发送失败，请稍后重试");
    }
  }

  currentSend.addEventListener("click", sendCurrentCode);

  function factorValues() {
    if (!factorCode.hidden) return { current_sms_code: byId("cur-phonecode").value.trim() };
    return { password: byId("password").value };
  }

  function showRefusal(resp, factor) {
    if (resp.errno === RET.PWDERR) {
      errors.set("password", resp.errmsg);
      byId("password").focus();
    } else if (resp.errmsg.startsWith("原手机号") && factor.current_sms_code !== undefined) {
      errors.set("cur-phonecode", resp.errmsg);
      byId("cur-phonecode").focus();
    } else if (resp.errno === RET.DATAEXIST || resp.errmsg.startsWith("手机号")) {
      errors.set("mobile", resp.errno === RET.DATAEXIST ? "该手机号已被使用" : resp.errmsg);
      byId("mobile").focus();
    } else if (resp.errno === RET.SESSIONERR) {
      formError.textContent = "登录已过期，请重新登录";
    } else {
      // REQERR (the login throttle) carries its own "retry in N seconds".
      formError.textContent = resp.errmsg || "更换失败，请稍后重试";
    }
  }

  Ihome.onSubmit(form, submit, formError, async () => {
    const values = sms.values();
    const factor = factorValues();
    const invalid = errors.show({
      mobile: MOBILE_RE.test(values.mobile) ? "" : "请输入正确的11位手机号",
      phonecode: SMS_CODE_RE.test(values.sms_code) ? "" : "请输入6位数字短信验证码",
      password: factor.password === "" ? "请输入当前登录密码" : "",
      "cur-phonecode":
        factor.current_sms_code === undefined || SMS_CODE_RE.test(factor.current_sms_code)
          ? ""
          : "请输入原手机号收到的6位验证码",
    });
    if (invalid) return;

    const resp = await sms.submit(submit, "PUT", "/api/v1.0/user/mobile", { ...values, ...factor });
    if (!resp) return;
    if (resp.errno === RET.OK) {
      submit.reset();
      form.reset();
      sms.clear(); // the "sent to …" of the number just used is stale now
      useCurrentCode(false);
      showProfile(resp.data);
      Ihome.myAccount.refreshDevices(); // every other session ended, this one is new
      status.textContent = `手机号已更换为 ${maskMobile(resp.data.mobile)}`;
      status.focus();
    } else {
      showRefusal(resp, factor);
    }
  });

  logoutButton.addEventListener("click", async () => {
    if (await Ihome.logOut(logoutButton, formError)) window.location.assign("/");
  });

  loadProfile();
  window.addEventListener("pageshow", (event) => {
    if (event.persisted) loadProfile();
  });
})();
