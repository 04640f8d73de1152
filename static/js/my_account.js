/* my.html, the parts besides the change of mobile: 修改密码 (the old password, the new one
   twice; a CAPTCHA when the login throttle asks) and 登录设备 (the account's sessions, each
   with its 退出, and 退出其他设备). my.js calls Ihome.myAccount.show() once logged in. */
"use strict";

Ihome.myAccount = (() => {
  const { RET, api, byId } = Ihome;
  const passwordForm = byId("password-form");
  const errors = Ihome.fieldErrors(passwordForm, [
    "old-password",
    "new-password",
    "new-password2",
    "pw-imagecode",
  ]);
  const submit = Ihome.submitButton(byId("password-submit"), "提交中…");
  const formError = byId("password-form-err");
  const captchaField = byId("pw-captcha");
  const captcha = Ihome.captcha("pw-", errors);
  const devices = byId("devices");
  const list = byId("device-list");
  const devicesStatus = byId("devices-status");
  const endOthers = byId("end-others");

  function when(seconds) {
    if (!seconds) return "";
    const d = new Date(seconds * 1000);
    const two = (n) => String(n).padStart(2, "0");
    return `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())} ${two(d.getHours())}:${two(d.getMinutes())}`;
  }

  function deviceItem(session) {
    const item = document.createElement("li");
    item.className = "device";
    const text = document.createElement("div");
    text.className = "device-text";
    const name = document.createElement("span");
    name.className = "device-name";
    name.textContent = session.device; // textContent: data, never markup
    const meta = document.createElement("span");
    meta.className = "device-meta";
    const seen = when(session.last_seen);
    meta.textContent = [session.address, seen && `最近使用 ${seen}`].filter(Boolean).join(" · ");
    text.append(name, meta);
    item.append(text);
    if (session.current) {
      const mark = document.createElement("span");
      mark.className = "device-current";
      mark.textContent = "当前设备";
      item.append(mark);
    } else {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "btn btn-secondary";
      button.textContent = "退出";
      button.setAttribute("aria-label", `退出 ${session.device}（${session.address}）`);
      button.addEventListener("click", () => endOne(session, button));
      item.append(button);
    }
    return item;
  }

  async function refreshDevices() {
    const resp = await api("GET", "/api/v1.0/user/sessions");
    if (resp.errno !== RET.OK) {
      devicesStatus.textContent = resp.errmsg || "设备列表加载失败，请稍后重试";
      return;
    }
    const sessions = resp.data.sessions;
    list.replaceChildren(...sessions.map(deviceItem));
    endOthers.hidden = sessions.length < 2;
    devices.hidden = false;
  }

  async function endOne(session, button) {
    button.disabled = true;
    const resp = await api("DELETE", `/api/v1.0/user/sessions/${encodeURIComponent(session.id)}`);
    if (resp.errno === RET.OK || resp.errno === RET.NODATA) {
      devicesStatus.textContent = `已退出 ${session.device}`;
      await refreshDevices();
      devicesStatus.focus(); // the focused button is gone: say what happened
      return;
    }
    button.disabled = false;
    devicesStatus.textContent = resp.errmsg || "退出失败，请稍后重试";
  }

  endOthers.addEventListener("click", async () => {
    endOthers.disabled = true;
    const resp = await api("DELETE", "/api/v1.0/user/sessions");
    endOthers.disabled = false;
    if (resp.errno !== RET.OK) {
      devicesStatus.textContent = resp.errmsg || "退出失败，请稍后重试";
      return;
    }
    devicesStatus.textContent = `其他设备已退出（${resp.data.ended}台）`;
    await refreshDevices();
    devicesStatus.focus();
  });

  function showCaptcha(message) {
    captchaField.hidden = false;
    captcha.renew();
    errors.set("pw-imagecode", message);
    byId("pw-imagecode").focus();
  }

  function showRefusal(resp) {
    const fieldOf = {
      [RET.PWDERR]: "old-password",
      [RET.DATAERR]: resp.errmsg.includes("图片验证码") ? "pw-imagecode" : "old-password",
      [RET.NODATA]: "pw-imagecode",
    };
    let field = fieldOf[resp.errno];
    if (resp.errno === RET.PARAMERR && resp.errmsg.includes("密码")) {
      field = resp.errmsg.includes("两次") ? "new-password2" : "new-password";
    }
    if (field) {
      errors.set(field, resp.errmsg);
      byId(field).focus();
    } else if (resp.errno === RET.SESSIONERR) {
      formError.textContent = "登录已过期，请重新登录";
    } else {
      formError.textContent = resp.errmsg || "修改失败，请稍后重试"; // REQERR: "retry in N s"
    }
  }

  Ihome.onSubmit(passwordForm, submit, formError, async () => {
    const withCaptcha = !captchaField.hidden;
    const body = {
      old_password: byId("old-password").value,
      password: byId("new-password").value,
      password2: byId("new-password2").value,
    };
    const length = [...body.password].length; // code points, like the server's len()
    const imageCode = byId("pw-imagecode").value.trim();
    const invalid = errors.show({
      "old-password": body.old_password ? "" : "请输入原密码",
      "new-password": length >= 6 && length <= 64 ? "" : "密码长度应为6-64位",
      "new-password2": body.password2 === body.password ? "" : "两次密码不一致",
      "pw-imagecode": withCaptcha && !imageCode ? "请输入图片验证码" : "",
    });
    if (invalid) return;
    if (withCaptcha) Object.assign(body, { image_code: imageCode, image_code_id: captcha.id });

    submit.start();
    const resp = await api("PUT", "/api/v1.0/user/password", body);
    submit.reset();
    if (resp.errno === RET.REQERR && resp.data && resp.data.reason === "captcha_required") {
      showCaptcha(resp.errmsg);
      return;
    }
    if (withCaptcha) captcha.renew(); // one attempt per CAPTCHA, right or wrong
    if (resp.errno !== RET.OK) {
      showRefusal(resp);
      return;
    }
    passwordForm.reset();
    captchaField.hidden = true;
    devicesStatus.textContent = "";
    const done = byId("my-status");
    done.textContent = "密码已修改，其他设备上的登录已退出";
    await refreshDevices();
    done.focus();
  });

  return {
    show() {
      passwordForm.hidden = false;
      refreshDevices();
    },
    refreshDevices,
  };
})();
