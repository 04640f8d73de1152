/* Helpers shared by every page: cookies, ids, the JSON API and inline field errors. */
"use strict";

const Ihome = (() => {
  // ihome's RET codes (strings on the wire).
  const RET = {
    OK: "0",
    DBERR: "4001",
    NODATA: "4002",
    DATAEXIST: "4003",
    DATAERR: "4004",
    SESSIONERR: "4101",
    USERERR: "4104",
    PWDERR: "4106",
    PARAMERR: "4103",
    REQERR: "4201",
    THIRDERR: "4301",
  };

  // Same rule as the server (services/validation.py), so most typos never cost a request.
  const MOBILE_RE = /^1[3-9][0-9]{9}$/;
  const SMS_CODE_RE = /^[0-9]{6}$/;
  // What a person may type around the digits (services/accounts/mobiles.py SPELLING_RE).
  const SPELLING_RE = /^[0-9+\-() .]{11,24}$/;

  // The 11 digits of a mobile as people write it ("+86 138 1234 5678", "0086-138…",
  // full-width digits), as the server's canonical_mobile reads it; else the text, trimmed,
  // for MOBILE_RE to refuse (the server has the last word: it knows the numbering plan).
  function mobileOf(text) {
    const spelled = String(text || "").normalize("NFKC").split(/\s+/).filter(Boolean).join(" ");
    if (!SPELLING_RE.test(spelled)) return spelled;
    let digits = spelled.replace(/[^0-9+]/g, "").replace(/^(?:\+86|0086)/, "");
    if (digits.length === 13 && digits.startsWith("86")) digits = digits.slice(2);
    return MOBILE_RE.test(digits) ? digits : spelled;
  }

  function getCookie(name) {
    for (const part of document.cookie.split(";")) {
      const [key, ...rest] = part.trim().split("=");
      if (key === name) return rest.join("=");
    }
    return "";
  }

  // A v4 UUID like ihome's generateUUID, but from the CSPRNG. crypto.randomUUID exists only in
  // secure contexts, and the server may be reached over plain HTTP on a LAN address.
  function uuid4() {
    if (window.crypto.randomUUID) return window.crypto.randomUUID();
    const b = window.crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }

  // Calls the JSON API and always resolves to an {errno, errmsg, data?} envelope, so callers
  // have one error path; network failures get errno "" (no RET code matches it).
  async function api(method, url, body) {
    const headers = { Accept: "application/json" };
    const init = { method, headers, credentials: "same-origin", cache: "no-store" };
    if (method !== "GET") headers["X-CSRFToken"] = getCookie("csrf_token");
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(url, init);
    } catch {
      return { errno: "", errmsg: "网络连接失败，请检查网络后重试" };
    }
    try {
      const answer = await response.json();
      if (answer && typeof answer.errno === "string") return answer;
    } catch {
      // not JSON: a proxy error page or similar
    }
    return { errno: "", errmsg: `服务器繁忙（HTTP ${response.status}），请稍后重试` };
  }

  // Shows (or clears, with an empty message) the inline error under one input. The message
  // element is an aria-live region named by the input's aria-describedby.
  function setError(input, errorElement, message) {
    errorElement.textContent = message || "";
    if (input) {
      if (message) input.setAttribute("aria-invalid", "true");
      else input.removeAttribute("aria-invalid");
    }
  }

  // Wires the inline errors of a form: each input's error element is the last id in its
  // aria-describedby (so screen readers read the error with the field). Typing clears it.
  function fieldErrors(form, ids) {
    const fields = {};
    for (const id of ids) {
      const input = form.querySelector(`#${id}`);
      const error = document.getElementById(input.getAttribute("aria-describedby").split(" ").pop());
      fields[id] = { input, error };
      input.addEventListener("input", () => setError(input, error, ""));
    }
    return {
      set(id, message) {
        setError(fields[id].input, fields[id].error, message);
      },
      // A message under the field that is not about its value (e.g. "retry in 30 s").
      note(id, message) {
        setError(null, fields[id].error, message);
      },
      clear() {
        for (const id of ids) setError(fields[id].input, fields[id].error, "");
      },
      // Shows every message in errors ({id: message}), focuses the first field that has one.
      show(errors) {
        let first = null;
        for (const id of ids) {
          if (errors[id]) {
            this.set(id, errors[id]);
            first = first || fields[id].input;
          }
        }
        if (first) first.focus();
        return first !== null;
      },
    };
  }

  function maskMobile(mobile) {
    return `${mobile.slice(0, 3)}****${mobile.slice(-4)}`;
  }

  const byId = (id) => document.getElementById(id);

  // 退出: ends the session; true once logged out, else false with the error in `formError`.
  async function logOut(button, formError) {
    formError.textContent = "";
    button.disabled = true;
    const resp = await api("DELETE", "/api/v1.0/session");
    button.disabled = false;
    if (resp.errno === RET.OK) return true;
    formError.textContent = resp.errmsg || "退出失败，请稍后重试";
    return false;
  }

  // A form's submit button: `busy` while its request runs (a second submit is ignored), with
  // `busyText` on it if given. Coming back from the back/forward cache the page shows the
  // button as it was left, stuck at busy: it is reset then.
  function submitButton(button, busyText) {
    const idleText = button.textContent;
    let busy = false;
    const control = {
      get busy() {
        return busy;
      },
      start() {
        busy = true;
        button.disabled = true;
        if (busyText) button.textContent = busyText;
      },
      reset() {
        busy = false;
        button.disabled = false;
        button.textContent = idleText;
      },
    };
    window.addEventListener("pageshow", (event) => {
      if (event.persisted) control.reset();
    });
    return control;
  }

  // Runs `handler` on the form's submit (no page load), unless the request of the previous
  // submit is still running (`submit`: Ihome.submitButton); clears the form's error first.
  function onSubmit(form, submit, formError, handler) {
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      if (submit.busy) return;
      formError.textContent = "";
      handler();
    });
  }

  return {
    RET,
    MOBILE_RE,
    SMS_CODE_RE,
    mobileOf,
    getCookie,
    uuid4,
    api,
    setError,
    fieldErrors,
    maskMobile,
    byId,
    logOut,
    submitButton,
    onSubmit,
  };
})();
