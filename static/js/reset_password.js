/* reset_password.html: a reset_password code, a new password twice → logged in, and told so
   on this page (where to go next: the index or 我的账号). */
"use strict";

(() => {
  const { RET, MOBILE_RE, SMS_CODE_RE, api, byId } = Ihome;
  const form = byId("reset-form");
  const errors = Ihome.fieldErrors(form, ["mobile", "imagecode", "phonecode", "password", "password2"]);
  const submit = Ihome.submitButton(byId("reset-submit"), "提交中…");
  const formError = byId("form-err");
  const sms = Ihome.smsCode.attach({
    errors,
    purpose: "reset_password",
    refusals: { [RET.USERERR]: "该手机号尚未注册" },
  });

  Ihome.onSubmit(form, submit, formError, async () => {
    const password = byId("password").value;
    const values = { ...sms.values(), password, password2: byId("password2").value };
    const length = [...values.password].length; // code points, like the server's len()
    const invalid = errors.show({
      mobile: MOBILE_RE.test(values.mobile) ? "" : "请输入正确的11位手机号",
      phonecode: SMS_CODE_RE.test(values.sms_code) ? "" : "请输入6位数字短信验证码",
      password: length >= 6 && length <= 64 ? "" : "密码长度应为6-64位",
      password2: values.password2 === values.password ? "" : "两次密码不一致",
    });
    if (invalid) return;

    const resp = await sms.submit(submit, "POST", "/api/v1.0/password_reset", values);
    if (!resp) return;
    if (resp.errno === RET.OK) {
      form.hidden = true;
      byId("reset-switch").hidden = true;
      byId("reset-done").hidden = false;
      byId("reset-done-msg").focus();
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
})();
