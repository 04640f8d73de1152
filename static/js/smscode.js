/* The SMS-code part of a form, shared by every page that asks for a code: the image/audio
   CAPTCHA, 获取验证码 and its countdown, which survives a reload, the delivery receipt, the
   offer of a voice call (收不到短信？接听语音验证码) and the proof of work when the server asks;
   and the submit of the code. The image CAPTCHA is its own widget: the password login uses it. */
"use strict";

/* The image CAPTCHA with its audio version, as sms_fields.html and login.html lay it out:
   `prefix` + imagecode, captcha-img, captcha-refresh, captcha-audio, captcha-player.
   `errors` (Ihome.fieldErrors) shows its messages under the imagecode input. */
Ihome.captcha = (prefix, errors) => {
  const { byId, uuid4 } = Ihome;
  const field = `${prefix}imagecode`;
  const input = byId(field);
  const img = byId(`${prefix}captcha-img`);
  const audioLink = byId(`${prefix}captcha-audio`);
  const audioPlayer = byId(`${prefix}captcha-player`);
  let id = "";

  function renew() {
    id = uuid4();
    img.src = `/api/v1.0/image_codes/${id}`;
    audioLink.href = `/api/v1.0/image_codes/${id}/audio`;
    audioPlayer.pause();
    audioPlayer.removeAttribute("src");
    input.value = "";
  }

  byId(`${prefix}captcha-refresh`).addEventListener("click", () => {
    errors.set(field, "");
    renew();
    input.focus();
  });

  // The server answers JSON (e.g. DBERR) instead of an image when it cannot make a CAPTCHA.
  img.addEventListener("error", () => {
    errors.set(field, "图片验证码加载失败，请点击图片重试");
  });

  // Without JS the link opens the WAV itself; with JS it plays in place, keeping the form.
  audioLink.addEventListener("click", (event) => {
    event.preventDefault();
    audioPlayer.src = audioLink.href;
    audioPlayer.play().catch(() => {
      errors.set(field, "语音验证码播放失败，请稍后重试或换一张图片");
    });
    input.focus();
  });

  return {
    get id() {
      return id;
    },
    renew,
  };
};

Ihome.smsCode = (() => {
  const { RET, MOBILE_RE, api, byId, maskMobile, mobileOf } = Ihome;
  // {mobile, until (ms since epoch)} from the server's retry_after, per tab (sessionStorage).
  // One key for every page and purpose: the server has one resend guard per mobile.
  const COUNTDOWN_KEY = "ihome.smsCountdown";
  const DEFAULT_RETRY_AFTER = 60;
  // After a send, ask the server briefly whether the provider reported delivery
  // (GET /api/v1.0/sms_sends/<send_id>): 已送达, or 发送失败 (and the voice offer).
  const DELIVERY_POLL_MS = 2000;
  const DELIVERY_POLL_TRIES = 15;

  function loadCountdown() {
    try {
      const saved = JSON.parse(sessionStorage.getItem(COUNTDOWN_KEY));
      if (saved && typeof saved.mobile === "string" && saved.until > Date.now()) return saved;
    } catch {
      // storage disabled or garbage: no countdown to resume
    }
    return null;
  }

  function saveCountdown(countdown) {
    try {
      if (countdown) sessionStorage.setItem(COUNTDOWN_KEY, JSON.stringify(countdown));
      else sessionStorage.removeItem(COUNTDOWN_KEY);
    } catch {
      // storage disabled (private mode): the countdown just won't survive a reload
    }
  }

  /* Wires the SMS-code fields of one form (templates/sms_fields.html): their ids are `prefix`
     + mobile, imagecode, phonecode, send-sms, phone-code-status, voice-offer, send-voice,
     pow-box and the CAPTCHA's (Ihome.captcha). `errors`: the form's Ihome.fieldErrors.
     `purpose`: the code's purpose (register, login, reset_password, change_mobile).
     `refusals`: {errno: message} for the purpose's own refusals (DATAEXIST, USERERR …). */
  function attach({ prefix = "", errors, purpose, refusals }) {
    const fields = {
      mobile: `${prefix}mobile`,
      imagecode: `${prefix}imagecode`,
      phonecode: `${prefix}phonecode`,
    };
    const el = {
      mobile: byId(fields.mobile),
      imageCode: byId(fields.imagecode),
      phoneCode: byId(fields.phonecode),
      smsButton: byId(`${prefix}send-sms`),
      smsStatus: byId(`${prefix}phone-code-status`),
      voiceOffer: byId(`${prefix}voice-offer`),
      voiceLink: byId(`${prefix}send-voice`),
      powBox: byId(`${prefix}pow-box`),
    };
    const captcha = Ihome.captcha(prefix, errors);
    const newCaptcha = captcha.renew;
    let countdown = null;
    let countdownTimer = 0;
    let sending = false;
    // The mobile an SMS went to, and whether its receipt said it failed: the voice offer
    // appears once the countdown is over or the SMS failed.
    let smsSentTo = null;
    let smsFailed = false;
    let deliveryPoll = 0;

    function startCountdown(mobile, seconds) {
      const retryAfter = Number.isFinite(seconds) && seconds > 0 ? seconds : DEFAULT_RETRY_AFTER;
      countdown = { mobile, until: Date.now() + retryAfter * 1000 };
      saveCountdown(countdown);
      render();
    }

    function secondsLeft() {
      return countdown ? Math.max(0, Math.ceil((countdown.until - Date.now()) / 1000)) : 0;
    }

    // The countdown belongs to one mobile (the server guards per mobile): after fixing a typo
    // the user may send at once, and switching back shows the rest of the countdown.
    function render() {
      clearTimeout(countdownTimer);
      if (countdown && secondsLeft() === 0) {
        countdown = null;
        saveCountdown(null);
      }
      const counting = countdown !== null && countdown.mobile === mobileOf(el.mobile.value);
      el.voiceOffer.hidden = !(smsSentTo === mobileOf(el.mobile.value) && (!counting || smsFailed));
      if (counting) {
        el.smsButton.disabled = true;
        const left = secondsLeft();
        // Past the usual 60 s (an hourly or daily cap) whole minutes read better than 3540秒.
        el.smsButton.textContent = left > 120 ? `${Math.ceil(left / 60)}分钟` : `${left}秒`;
        // Wake up when the displayed second changes; from the clock, not by counting ticks,
        // so throttled timers in a background tab cannot make it lag behind the server.
        countdownTimer = setTimeout(render, (countdown.until - Date.now()) % 1000 || 1000);
      } else {
        el.smsButton.disabled = sending;
        el.smsButton.textContent = sending ? "发送中…" : "获取验证码";
      }
    }

    function focusField(id) {
      document.getElementById(id).focus();
    }

    function followDelivery(sendId, mobile, triesLeft = DELIVERY_POLL_TRIES) {
      clearTimeout(deliveryPoll);
      if (!sendId || triesLeft <= 0) return;
      deliveryPoll = setTimeout(async () => {
        const resp = await api("GET", `/api/v1.0/sms_sends/${encodeURIComponent(sendId)}`);
        const status = resp.errno === RET.OK && resp.data ? resp.data.status : "";
        if (status === "delivered") {
          el.smsStatus.textContent = `验证码已送达 ${maskMobile(mobile)}，请查收短信`;
          el.smsStatus.dataset.delivery = "delivered";
        } else if (status === "failed") {
          el.smsStatus.textContent = "短信发送失败，请稍后重新获取验证码";
          el.smsStatus.dataset.delivery = "failed";
          smsFailed = resp.data.channel === "sms";
          render();
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

    // Solve with the vendored ALTCHA widget (static/js/pow.js) in a worker; `request(altcha)`
    // repeats the request with the solution.
    async function retryWithProofOfWork(request, challenge) {
      el.smsStatus.textContent = "正在进行安全验证，请稍候…";
      let payload;
      try {
        payload = await window.IhomePow.solve(challenge, el.powBox);
      } catch {
        el.smsStatus.textContent = "";
        return { errno: "", errmsg: "安全验证失败，请稍后重试" };
      } finally {
        el.powBox.hidden = true;
      }
      el.smsStatus.textContent = "";
      return request(payload);
    }

    async function send(channel = "sms") {
      const voice = channel === "voice";
      if (sending || (!voice && el.smsButton.disabled)) return;
      const mobile = mobileOf(el.mobile.value);
      const imageCode = el.imageCode.value.trim();
      errors.set(fields.phonecode, "");
      el.smsStatus.textContent = "";
      const invalid = errors.show({
        [fields.mobile]: MOBILE_RE.test(mobile) ? "" : "请输入正确的11位手机号",
        [fields.imagecode]: imageCode ? "" : "请输入图片验证码",
      });
      if (invalid) return;

      sending = true;
      render();
      const body = { mobile, image_code: imageCode, image_code_id: captcha.id, purpose, channel };
      const request = (altcha) =>
        api("POST", "/api/v1.0/sms_codes", altcha ? { ...body, altcha } : body);
      let resp = await request();
      // The network or number looks abused: the server wants a proof of work first. It did not
      // use the CAPTCHA up, so the same request is repeated with the solution.
      if (isPowRequired(resp)) resp = await retryWithProofOfWork(request, resp.data.challenge);
      sending = false;
      const retryAfter = resp.data && resp.data.retry_after;

      // A CAPTCHA is single-use: once the server has checked it (every answer except PARAMERR
      // and network failures), the next request needs a new one.
      if (resp.errno !== RET.PARAMERR && resp.errno !== "") newCaptcha();
      render();

      if (refusals[resp.errno]) {
        errors.set(fields.mobile, refusals[resp.errno]);
        el.mobile.focus();
        return;
      }
      switch (resp.errno) {
        case RET.OK:
          smsSentTo = voice ? null : mobile;
          smsFailed = false;
          startCountdown(mobile, retryAfter);
          el.smsStatus.textContent = voice
            ? `正在呼叫 ${maskMobile(mobile)}，请接听来电收听验证码`
            : `验证码已发送至 ${maskMobile(mobile)}，请查收短信`;
          delete el.smsStatus.dataset.delivery;
          followDelivery(resp.data && resp.data.send_id, mobile);
          el.phoneCode.focus();
          return;
        case RET.REQERR:
          if (resp.data && resp.data.reason === "voice_quiet_hours") {
            errors.note(fields.phonecode, resp.errmsg); // no countdown: SMS still works at night
            return;
          }
          startCountdown(mobile, retryAfter);
          errors.note(fields.phonecode, resp.errmsg);
          el.phoneCode.focus();
          return;
        case RET.NODATA:
        case RET.DATAERR:
          errors.set(
            fields.imagecode,
            resp.errno === RET.NODATA ? "图片验证码已过期，请输入新的验证码" : "图片验证码错误，请重新输入",
          );
          el.imageCode.focus();
          return;
        case RET.PARAMERR:
          if (resp.errmsg.includes("手机号")) {
            errors.set(fields.mobile, resp.errmsg);
            focusField(fields.mobile);
          } else if (resp.errmsg.includes("图片验证码")) {
            errors.set(fields.imagecode, resp.errmsg);
            focusField(fields.imagecode);
          } else {
            errors.note(fields.phonecode, resp.errmsg);
          }
          return;
        case RET.THIRDERR:
          if (retryAfter) {
            // No verdict from the provider: the SMS may still arrive and the server counts
            // it as sent, so count down like after a sent one instead of inviting a retry.
            startCountdown(mobile, retryAfter);
            errors.note(fields.phonecode, resp.errmsg);
            el.phoneCode.focus();
            return;
          }
          errors.note(fields.phonecode, "短信发送失败，请输入新的图片验证码后重试");
          el.imageCode.focus();
          return;
        default:
          errors.note(fields.phonecode, resp.errmsg || "发送失败，请稍后重试");
          el.smsButton.focus();
      }
    }

    el.smsButton.addEventListener("click", () => send("sms"));
    el.voiceLink.addEventListener("click", (event) => {
      event.preventDefault();
      send("voice");
    });
    el.mobile.addEventListener("input", render);

    newCaptcha();
    countdown = loadCountdown();
    if (countdown && !el.mobile.value) el.mobile.value = countdown.mobile;
    render();
    // Back/forward cache: the page comes back as it was left, but its CAPTCHA may be used or
    // expired by now, and the countdown has moved on.
    window.addEventListener("pageshow", (event) => {
      if (!event.persisted) return;
      newCaptcha();
      render();
    });

    return {
      // After the code was used and the form reset: no message about the last send stays
      // (its "sent to …", delivery, voice offer), the button shows what the field now holds.
      clear() {
        clearTimeout(deliveryPoll);
        smsSentTo = null;
        smsFailed = false;
        el.smsStatus.textContent = "";
        delete el.smsStatus.dataset.delivery;
        errors.set(fields.phonecode, "");
        render();
      },
      // The mobile and the code as typed, for the request that uses the code.
      values() {
        return { mobile: mobileOf(el.mobile.value), sms_code: el.phoneCode.value.trim() };
      },
      /* The request that uses the code, with `submit` (Ihome.submitButton) busy meanwhile.
         Accepted: the code is used up (no countdown to resume), the button stays busy for the
         page to go on. Else the button is ready again; a wrong or expired code (NODATA,
         DATAERR naming 短信验证码 first: the server's refusals of this form's code) is shown
         under its field and null returned, any other answer (another field's) returned. */
      async submit(submit, method, url, values) {
        submit.start();
        const resp = await api(method, url, values);
        if (resp.errno === RET.OK) {
          countdown = null;
          saveCountdown(null);
          return resp;
        }
        submit.reset();
        const codeRefused = resp.errno === RET.NODATA || resp.errno === RET.DATAERR;
        if (!codeRefused || !resp.errmsg.startsWith("短信验证码")) return resp;
        errors.set(fields.phonecode, resp.errmsg);
        el.phoneCode.focus();
        return null;
      },
    };
  }

  return { attach };
})();
