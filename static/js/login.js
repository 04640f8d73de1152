/* login.html: mobile + password → a session, then the index. */
"use strict";

(() => {
  const { RET, MOBILE_RE, api } = Ihome;
  const form = document.getElementById("login-form");
  const mobileInput = document.getElementById("mobile");
  const passwordInput = document.getElementById("password");
  const submitButton = document.getElementById("login-submit");
  const formError = document.getElementById("form-err");
  const errors = Ihome.fieldErrors(form, ["mobile", "password"]);
  let submitting = false;

  function resetSubmit() {
    submitting = false;
    submitButton.disabled = false;
    submitButton.textContent = "登录";
  }

  // Back/forward cache: coming back after a login must not show a stuck "登录中…" button.
  window.addEventListener("pageshow", (event) => {
    if (event.persisted) resetSubmit();
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (submitting) return;
    formError.textContent = "";
    const mobile = mobileInput.value.trim();
    const password = passwordInput.value;
    const invalid = errors.show({
      mobile: MOBILE_RE.test(mobile) ? "" : "请输入正确的11位手机号",
      password: password ? "" : "请输入密码",
    });
    if (invalid) return;

    submitting = true;
    submitButton.disabled = true;
    submitButton.textContent = "登录中…";
    const resp = await api("POST", "/api/v1.0/sessions", { mobile, password });
    if (resp.errno === RET.OK) {
      window.location.assign("/");
      return;
    }
    resetSubmit();
    if (resp.errno === RET.PARAMERR && resp.errmsg.includes("手机号")) {
      errors.set("mobile", resp.errmsg);
      mobileInput.focus();
      return;
    }
    // Wrong mobile or password is one message on purpose (no hint which one was wrong);
    // REQERR carries its own "retry in N seconds".
    formError.textContent = resp.errmsg || "登录失败，请稍后重试";
    if (resp.errno === RET.DATAERR) {
      passwordInput.value = "";
      passwordInput.focus();
    }
  });
})();
