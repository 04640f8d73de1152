/* my.html: the profile with the masked mobile, 更换手机号 (code to the new number), 退出. */
"use strict";

(() => {
  const { RET, MOBILE_RE, SMS_CODE_RE, api, byId, maskMobile } = Ihome;
  const form = byId("change-form");
  const errors = Ihome.fieldErrors(form, ["mobile", "imagecode", "phonecode"]);
  const status = byId("my-status");
  const submit = Ihome.submitButton(byId("change-submit"));
  const formError = byId("form-err");
  const logoutButton = byId("logout");
  let sms = null;

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
        errors,
        purpose: "change_mobile",
        refusals: {
          [RET.DATAEXIST]: "该手机号已被使用",
          [RET.SESSIONERR]: "登录已过期，请重新登录",
        },
      });
    }
  }

  Ihome.onSubmit(form, submit, formError, async () => {
    const values = sms.values();
    const invalid = errors.show({
      mobile: MOBILE_RE.test(values.mobile) ? "" : "请输入正确的11位手机号",
      phonecode: SMS_CODE_RE.test(values.sms_code) ? "" : "请输入6位数字短信验证码",
    });
    if (invalid) return;

    const resp = await sms.submit(submit, "PUT", "/api/v1.0/user/mobile", values);
    if (!resp) return;
    if (resp.errno === RET.OK) {
      submit.reset();
      form.reset();
      showProfile(resp.data);
      status.textContent = `手机号已更换为 ${maskMobile(resp.data.mobile)}`;
      status.focus();
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
    if (await Ihome.logOut(logoutButton, formError)) window.location.assign("/");
  });

  loadProfile();
  window.addEventListener("pageshow", (event) => {
    if (event.persisted) loadProfile();
  });
})();
