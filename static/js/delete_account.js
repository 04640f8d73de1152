/* my.html's 注销账号 (templates/delete_account.html): a delete_account code sent to the
   account's own number (no mobile is sent), the password, DELETE /api/v1.0/user. Shown once
   my.js has loaded the profile (its "ihome-profile" event). */
"use strict";

(() => {
  const { RET, SMS_CODE_RE, api, byId, maskMobile } = Ihome;
  const section = byId("delete-section");
  const form = byId("delete-form");
  const start = byId("delete-start");
  const done = byId("delete-done");
  const formError = byId("delete-err");
  const send = byId("del-send-sms");
  const submit = Ihome.submitButton(byId("delete-submit"), "提交中…");
  const errors = Ihome.fieldErrors(form, ["del-imagecode", "del-phonecode", "del-password"]);
  const captcha = Ihome.captcha("del-", errors);
  let mobile = "";
  let sendTimer = 0;

  document.addEventListener("ihome-profile", (event) => {
    mobile = event.detail.mobile;
    section.hidden = false;
  });

  start.addEventListener("click", () => {
    form.hidden = false;
    start.hidden = true;
    start.setAttribute("aria-expanded", "true");
    if (!captcha.id) captcha.renew();
    byId("del-imagecode").focus();
  });

  async function sendCode() {
    const imageCode = byId("del-imagecode").value.trim();
    byId("del-phone-code-status").textContent = "";
    if (errors.show({ "del-imagecode": imageCode ? "" : "请输入图片验证码" })) return;
    send.disabled = true;
    const body = { image_code: imageCode, image_code_id: captcha.id, purpose: "delete_account" };
    const resp = await api("POST", "/api/v1.0/sms_codes", body);
    if (resp.errno !== RET.PARAMERR && resp.errno !== "") captcha.renew(); // used up
    if (resp.errno === RET.OK) {
      byId("del-phone-code-status").textContent = `验证码已发送至 ${maskMobile(mobile)}`;
      clearTimeout(sendTimer);
      sendTimer = setTimeout(() => {
        send.disabled = false;
      }, (resp.data.retry_after || 60) * 1000);
      byId("del-phonecode").focus();
      return;
    }
    send.disabled = false;
    if (resp.errno === RET.NODATA || resp.errno === RET.DATAERR) {
      errors.set("del-imagecode", resp.errmsg);
      byId("del-imagecode").focus();
    } else {
      errors.note("del-phonecode", resp.errmsg || "发送失败，请稍后重试");
    }
  }

  send.addEventListener("click", sendCode);

  function showRefusal(resp) {
    if (resp.errno === RET.PWDERR) {
      errors.set("del-password", resp.errmsg);
      byId("del-password").focus();
    } else if (resp.errmsg.includes("验证码")) {
      errors.set("del-phonecode", resp.errmsg);
      byId("del-phonecode").focus();
    } else if (resp.errno === RET.SESSIONERR) {
      formError.textContent = "登录已过期，请重新登录";
    } else {
      formError.textContent = resp.errmsg || "注销失败，请稍后重试";
    }
  }

  Ihome.onSubmit(form, submit, formError, async () => {
    const smsCode = byId("del-phonecode").value.trim();
    const password = byId("del-password").value;
    const invalid = errors.show({
      "del-phonecode": SMS_CODE_RE.test(smsCode) ? "" : "请输入6位数字短信验证码",
      "del-password": password ? "" : "请输入当前登录密码",
    });
    if (invalid) return;
    submit.start();
    const resp = await api("DELETE", "/api/v1.0/user", { sms_code: smsCode, password });
    submit.reset();
    if (resp.errno !== RET.OK) {
      showRefusal(resp);
      return;
    }
    // Every session has ended: the page shows only what happens next.
    const when = new Date(resp.data.purge_after).toLocaleString("zh-CN");
    for (const id of ["profile", "change-form", "logout", "delete-section"]) byId(id).hidden = true;
    done.textContent = `注销申请已提交，所有设备已退出登录。账号将于 ${when} 注销；在此之前重新登录即可撤销。`;
    done.hidden = false;
    done.focus();
  });
})();
