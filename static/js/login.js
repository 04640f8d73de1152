/* login.html: mobile + password (+ a CAPTCHA when the server asks) → a session, the index. */
"use strict";

(() => {
  const { RET, MOBILE_RE, api, uuid4 } = Ihome;
  const form = document.getElementById("login-form");
  const mobileInput = document.getElementById("mobile");
  const passwordInput = document.getElementById("password");
  const submitButton = document.getElementById("login-submit");
  const formError = document.getElementById("form-err");
  const captchaField = document.getElementById("login-captcha");
  const imageCodeInput = document.getElementById("imagecode");
  const captchaImg = document.getElementById("captcha-img");
  const audioLink = document.getElementById("captcha-audio");
  const audioPlayer = document.getElementById("captcha-player");
  const errors = Ihome.fieldErrors(form, ["mobile", "password", "imagecode"]);
  let submitting = false;
  let captchaId = "";

  // --- the CAPTCHA, once an account has had too many failed logins ---------------------------

  function newCaptcha() {
    captchaId = uuid4();
    captchaImg.src = `/api/v1.0/image_codes/${captchaId}`;
    audioLink.href = `/api/v1.0/image_codes/${captchaId}/audio`;
    audioPlayer.pause();
    audioPlayer.removeAttribute("src");
    imageCodeInput.value = "";
  }

  function showCaptcha(message) {
    captchaField.hidden = false;
    newCaptcha();
    errors.set("imagecode", message);
    imageCodeInput.focus();
  }

  document.getElementById("captcha-refresh").addEventListener("click", () => {
    errors.set("imagecode", "");
    newCaptcha();
    imageCodeInput.focus();
  });

  captchaImg.addEventListener("error", () => {
    errors.set("imagecode", "图片验证码加载失败，请点击图片重试");
  });

  audioLink.addEventListener("click", (event) => {
    event.preventDefault();
    audioPlayer.src = audioLink.href;
    audioPlayer.play().catch(() => {
      errors.set("imagecode", "语音验证码播放失败，请稍后重试或换一张图片");
    });
    imageCodeInput.focus();
  });

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
    const withCaptcha = !captchaField.hidden;
    const imageCode = imageCodeInput.value.trim();
    const invalid = errors.show({
      mobile: MOBILE_RE.test(mobile) ? "" : "请输入正确的11位手机号",
      password: password ? "" : "请输入密码",
      imagecode: withCaptcha && !imageCode ? "请输入图片验证码" : "",
    });
    if (invalid) return;

    submitting = true;
    submitButton.disabled = true;
    submitButton.textContent = "登录中…";
    const body = { mobile, password };
    if (withCaptcha) Object.assign(body, { image_code: imageCode, image_code_id: captchaId });
    const resp = await api("POST", "/api/v1.0/sessions", body);
    if (resp.errno === RET.OK) {
      window.location.assign("/");
      return;
    }
    resetSubmit();
    if (resp.errno === RET.REQERR && resp.data && resp.data.reason === "captcha_required") {
      showCaptcha(resp.errmsg);
      return;
    }
    // A CAPTCHA is good for one attempt, right or wrong: the next one needs a new image.
    if (withCaptcha) newCaptcha();
    if (resp.errmsg && resp.errmsg.includes("图片验证码")) {
      errors.set("imagecode", resp.errmsg);
      imageCodeInput.focus();
      return;
    }
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
