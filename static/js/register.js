/* register.html: image/audio CAPTCHA, SMS code with a resumable countdown, registration. */
"use strict";

(() => {
  const { RET, MOBILE_RE, api, uuid4, maskMobile } = Ihome;
  // The countdown survives a reload: {mobile, until (ms since epoch)} from the server's
  // retry_after, per tab (sessionStorage), like the server's guard is per mobile.
  const COUNTDOWN_KEY = "ihome.smsCountdown";
  const DEFAULT_RETRY_AFTER = 60;
  const SMS_CODE_RE = /^[0-9]{6}$/;
  const PASSWORD_MIN = 6;
  const PASSWORD_MAX = 64;

  const form = document.getElementById("register-form");
  const mobileInput = document.getElementById("mobile");
  const imageCodeInput = document.getElementById("imagecode");
  const phoneCodeInput = document.getElementById("phonecode");
  const passwordInput = document.getElementById("password");
  const password2Input = document.getElementById("password2");
  const captchaImg = document.getElementById("captcha-img");
  const captchaRefresh = document.getElementById("captcha-refresh");
  const audioLink = document.getElementById("captcha-audio");
  const audioPlayer = document.getElementById("captcha-player");
  const smsButton = document.getElementById("send-sms");
  const smsStatus = document.getElementById("phone-code-status");
  const voiceOffer = document.getElementById("voice-offer");
  const voiceLink = document.getElementById("send-voice");
  // The mobile an SMS went to, and whether its receipt said it failed: the voice offer
  // (收不到短信？接听语音验证码) appears once the countdown is over or the SMS failed.
  let smsSentTo = null;
  let smsFailed = false;
  const powBox = document.getElementById("pow-box");
  const submitButton = document.getElementById("register-submit");
  const formError = document.getElementById("form-err");
  const errors = Ihome.fieldErrors(form, [
    "mobile",
    "imagecode",
    "phonecode",
    "password",
    "password2",
  ]);

  let captchaId = "";
  let countdown = null;
  let countdownTimer = 0;
  let sending = false;
  let submitting = false;

  // --- image and audio CAPTCHA -------------------------------------------------------------

  function newCaptcha() {
    captchaId = uuid4();
    captchaImg.src = `/api/v1.0/image_codes/${captchaId}`;
    audioLink.href = `/api/v1.0/image_codes/${captchaId}/audio`;
    audioPlayer.pause();
    audioPlayer.removeAttribute("src");
    imageCodeInput.value = "";
  }

  captchaRefresh.addEventListener("click", () => {
    errors.set("imagecode", "");
    newCaptcha();
    imageCodeInput.focus();
  });

  // The server answers JSON (e.g. DBERR) instead of an image when it cannot make a CAPTCHA.
  captchaImg.addEventListener("error", () => {
    errors.set("imagecode", "图片验证码加载失败，请点击图片重试");
  });

  // Without JS the link opens the WAV itself; with JS it plays in place, keeping the form.
  audioLink.addEventListener("click", (event) => {
    event.preventDefault();
    audioPlayer.src = audioLink.href;
    audioPlayer.play().catch(() => {
      errors.set("imagecode", "语音验证码播放失败，请稍后重试或换一张图片");
    });
    imageCodeInput.focus();
  });

  // --- SMS code and countdown ----------------------------------------------------------------

  function loadCountdown() {
    try {
      const saved = JSON.parse(sessionStorage.getItem(COUNTDOWN_KEY));
      if (saved && typeof saved.mobile === "string" && saved.until > Date.now()) return saved;
    } catch {
      // storage disabled or garbage: no countdown to resume
    }
    return null;
  }

  function saveCountdown() {
    try {
      if (countdown) sessionStorage.setItem(COUNTDOWN_KEY, JSON.stringify(countdown));
      else sessionStorage.removeItem(COUNTDOWN_KEY);
    } catch {
      // storage disabled (private mode): the countdown just won't survive a reload
    }
  }

  function startCountdown(mobile, seconds) {
    const retryAfter = Number.isFinite(seconds) && seconds > 0 ? seconds : DEFAULT_RETRY_AFTER;
    countdown = { mobile, until: Date.now() + retryAfter * 1000 };
    saveCountdown();
    renderSmsButton();
  }

  function secondsLeft() {
    return countdown ? Math.max(0, Math.ceil((countdown.until - Date.now()) / 1000)) : 0;
  }

  // The countdown belongs to one mobile (the server guards per mobile): after fixing a typo in
  // the number the user may send at once, and switching back shows the rest of the countdown.
  function renderSmsButton() {
    clearTimeout(countdownTimer);
    if (countdown && secondsLeft() === 0) {
      countdown = null;
      saveCountdown();
    }
    const counting = countdown !== null && countdown.mobile === mobileInput.value.trim();
    voiceOffer.hidden = !(smsSentTo === mobileInput.value.trim() && (!counting || smsFailed));
    if (counting) {
      smsButton.disabled = true;
      const left = secondsLeft();
      // Past the usual 60 s (an hourly or daily cap) whole minutes read better than 3540秒.
      smsButton.textContent = left > 120 ? `${Math.ceil(left / 60)}分钟` : `${left}秒`;
      // Wake up when the displayed second changes; from the clock, not by counting ticks, so
      // throttled timers in a background tab cannot make the countdown lag behind the server.
      countdownTimer = setTimeout(renderSmsButton, (countdown.until - Date.now()) % 1000 || 1000);
    } else {
      smsButton.disabled = sending;
      smsButton.textContent = sending ? "发送中…" : "获取验证码";
    }
  }

  // Which field a PARAMERR of the SMS endpoint is about, from its message.
  function smsParamField(errmsg) {
    if (errmsg.includes("手机号")) return "mobile";
    if (errmsg.includes("图片验证码")) return "imagecode";
    return null;
  }

  // After a send, ask the server briefly whether the provider reported delivery
  // (GET /api/v1.0/sms_sends/<send_id>): 已送达, or 发送失败 so the user can ask again.
  const DELIVERY_POLL_MS = 2000;
  const DELIVERY_POLL_TRIES = 15;
  let deliveryPoll = 0;

  function followDelivery(sendId, mobile, triesLeft = DELIVERY_POLL_TRIES) {
    clearTimeout(deliveryPoll);
    if (!sendId || triesLeft <= 0) return;
    deliveryPoll = setTimeout(async () => {
      const resp = await api("GET", `/api/v1.0/sms_sends/${encodeURIComponent(sendId)}`);
      const status = resp.errno === RET.OK && resp.data ? resp.data.status : "";
      if (status === "delivered") {
        smsStatus.textContent = `验证码已送达 ${maskMobile(mobile)}，请查收短信`;
        smsStatus.dataset.delivery = "delivered";
      } else if (status === "failed") {
        smsStatus.textContent = "短信发送失败，请稍后重新获取验证码";
        smsStatus.dataset.delivery = "failed";
        smsFailed = resp.data.channel === "sms";
        renderSmsButton();
      } else if (status === "sent" || resp.errno === "") {
        followDelivery(sendId, mobile, triesLeft - 1);
      }
    }, DELIVERY_POLL_MS);
  }

  function isPowRequired(resp) {
    return (
      resp.errno === RET.REQERR && resp.data && resp.data.reason === "pow_required" &&
      resp.data.challenge
    );
  }

  // Solve with the vendored ALTCHA widget (static/js/pow.js) in a worker, then send again.
  // `send(altcha)` repeats the request, with the solution.
  async function retryWithProofOfWork(send, challenge) {
    smsStatus.textContent = "正在进行安全验证，请稍候…";
    let payload;
    try {
      payload = await window.IhomePow.solve(challenge, powBox);
    } catch {
      smsStatus.textContent = "";
      return { errno: "", errmsg: "安全验证失败，请稍后重试" };
    } finally {
      powBox.hidden = true;
    }
    smsStatus.textContent = "";
    return send(payload);
  }

  async function sendSmsCode(channel = "sms") {
    const voice = channel === "voice";
    if (sending || (!voice && smsButton.disabled)) return;
    const mobile = mobileInput.value.trim();
    const imageCode = imageCodeInput.value.trim();
    errors.set("phonecode", "");
    smsStatus.textContent = "";
    const invalid = errors.show({
      mobile: MOBILE_RE.test(mobile) ? "" : "请输入正确的11位手机号",
      imagecode: imageCode ? "" : "请输入图片验证码",
    });
    if (invalid) return;

    sending = true;
    renderSmsButton();
    const query = new URLSearchParams({ image_code: imageCode, image_code_id: captchaId });
    // The same request, optionally with a solved proof of work (JSON field on the POST, query
    // parameter on the GET).
    const send = (altcha) => {
      if (voice) {
        const body = { mobile, image_code: imageCode, image_code_id: captchaId, channel: "voice" };
        return api("POST", "/api/v1.0/sms_codes", altcha ? { ...body, altcha } : body);
      }
      const params = new URLSearchParams(query);
      if (altcha) params.set("altcha", altcha);
      return api("GET", `/api/v1.0/sms_codes/${mobile}?${params}`);
    };
    let resp = await send();
    // The network or number block looks abused: the server wants a proof of work first. It
    // did not use the CAPTCHA up, so the same request is repeated with the solution.
    if (isPowRequired(resp)) resp = await retryWithProofOfWork(send, resp.data.challenge);
    sending = false;
    const retryAfter = resp.data && resp.data.retry_after;

    // A CAPTCHA is single-use: once the server has checked it (every answer except PARAMERR
    // and network failures), the next request needs a new one.
    if (resp.errno !== RET.PARAMERR && resp.errno !== "") newCaptcha();

    switch (resp.errno) {
      case RET.OK:
        smsSentTo = voice ? null : mobile;
        smsFailed = false;
        startCountdown(mobile, retryAfter);
        smsStatus.textContent = voice
          ? `正在呼叫 ${maskMobile(mobile)}，请接听来电收听验证码`
          : `验证码已发送至 ${maskMobile(mobile)}，请查收短信`;
        delete smsStatus.dataset.delivery;
        followDelivery(resp.data && resp.data.send_id, mobile);
        phoneCodeInput.focus();
        return;
      case RET.REQERR:
        if (resp.data && resp.data.reason === "voice_quiet_hours") {
          renderSmsButton(); // no countdown: SMS still works at night
          errors.note("phonecode", resp.errmsg);
          return;
        }
        startCountdown(mobile, retryAfter);
        errors.note("phonecode", resp.errmsg);
        phoneCodeInput.focus();
        return;
      case RET.NODATA:
      case RET.DATAERR:
        renderSmsButton();
        errors.set(
          "imagecode",
          resp.errno === RET.NODATA ? "图片验证码已过期，请输入新的验证码" : "图片验证码错误，请重新输入",
        );
        imageCodeInput.focus();
        return;
      case RET.DATAEXIST:
        renderSmsButton();
        errors.set("mobile", "该手机号已注册，请直接登录");
        mobileInput.focus();
        return;
      case RET.PARAMERR: {
        renderSmsButton();
        const field = smsParamField(resp.errmsg);
        if (field) {
          errors.set(field, resp.errmsg);
          document.getElementById(field).focus();
        } else {
          errors.note("phonecode", resp.errmsg);
        }
        return;
      }
      case RET.THIRDERR:
        if (retryAfter) {
          // No verdict from the provider: the SMS may still arrive and the server counts it as
          // sent, so count down like after a sent one instead of inviting a retry.
          startCountdown(mobile, retryAfter);
          errors.note("phonecode", resp.errmsg);
          phoneCodeInput.focus();
          return;
        }
        renderSmsButton();
        errors.note("phonecode", "短信发送失败，请输入新的图片验证码后重试");
        imageCodeInput.focus();
        return;
      default:
        renderSmsButton();
        errors.note("phonecode", resp.errmsg || "发送失败，请稍后重试");
        smsButton.focus();
    }
  }

  smsButton.addEventListener("click", () => sendSmsCode("sms"));
  voiceLink.addEventListener("click", (event) => {
    event.preventDefault();
    sendSmsCode("voice");
  });
  mobileInput.addEventListener("input", renderSmsButton);

  // --- registration ------------------------------------------------------------------------

  function validate(values) {
    const length = [...values.password].length; // code points, like the server's len()
    let passwordError = "";
    if (!values.password) passwordError = "请输入密码";
    else if (length < PASSWORD_MIN || length > PASSWORD_MAX) passwordError = "密码长度应为6-64位";
    let password2Error = "";
    if (!values.password2) password2Error = "请再次输入密码";
    else if (values.password2 !== values.password) password2Error = "两次密码不一致";
    return {
      mobile: MOBILE_RE.test(values.mobile) ? "" : "请输入正确的11位手机号",
      phonecode: SMS_CODE_RE.test(values.sms_code) ? "" : "请输入6位数字短信验证码",
      password: passwordError,
      password2: password2Error,
    };
  }

  // Which field a PARAMERR of the users endpoint is about, from its message.
  function registerParamField(errmsg) {
    if (errmsg.includes("两次密码")) return "password2";
    if (errmsg.includes("密码")) return "password";
    if (errmsg.includes("手机号")) return "mobile";
    if (errmsg.includes("验证码")) return "phonecode";
    return null;
  }

  function resetSubmit() {
    submitting = false;
    submitButton.disabled = false;
    submitButton.textContent = "注册";
  }

  function fieldOrFormError(field, message) {
    if (field) {
      errors.set(field, message);
      document.getElementById(field).focus();
    } else {
      formError.textContent = message;
    }
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (submitting) return;
    formError.textContent = "";
    const values = {
      mobile: mobileInput.value.trim(),
      sms_code: phoneCodeInput.value.trim(),
      password: passwordInput.value,
      password2: password2Input.value,
    };
    if (errors.show(validate(values))) return;

    submitting = true;
    submitButton.disabled = true;
    submitButton.textContent = "注册中…";
    const resp = await api("POST", "/api/v1.0/users", values);
    if (resp.errno === RET.OK) {
      countdown = null;
      saveCountdown();
      window.location.assign("/");
      return;
    }
    resetSubmit();
    switch (resp.errno) {
      case RET.NODATA:
      case RET.DATAERR:
        fieldOrFormError("phonecode", resp.errmsg);
        return;
      case RET.DATAEXIST:
        fieldOrFormError("mobile", "该手机号已注册，请直接登录");
        return;
      case RET.PARAMERR:
        fieldOrFormError(registerParamField(resp.errmsg), resp.errmsg);
        return;
      default:
        fieldOrFormError(null, resp.errmsg || "注册失败，请稍后重试");
    }
  });

  // --- start ---------------------------------------------------------------------------------

  newCaptcha();
  countdown = loadCountdown();
  if (countdown && !mobileInput.value) mobileInput.value = countdown.mobile;
  renderSmsButton();

  // Back/forward cache: the page comes back as it was left, but its CAPTCHA may be used or
  // expired by now and a submit may have been in flight.
  window.addEventListener("pageshow", (event) => {
    if (!event.persisted) return;
    resetSubmit();
    newCaptcha();
    renderSmsButton();
  });
})();
