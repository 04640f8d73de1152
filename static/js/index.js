/* index.html: who is logged in (GET /api/v1.0/session), logout (DELETE). */
"use strict";

(() => {
  const { RET, api } = Ihome;
  const status = document.getElementById("index-status");
  const userPanel = document.getElementById("user-panel");
  const guestPanel = document.getElementById("guest-panel");
  const userName = document.getElementById("user-name");
  const logoutButton = document.getElementById("logout");
  const formError = document.getElementById("form-err");

  function showUser(name) {
    userName.textContent = name; // textContent: the name is data, never markup
    userPanel.hidden = false;
    guestPanel.hidden = true;
    status.textContent = "";
  }

  function showGuest(message) {
    userPanel.hidden = true;
    guestPanel.hidden = false;
    status.textContent = message;
  }

  logoutButton.addEventListener("click", async () => {
    formError.textContent = "";
    logoutButton.disabled = true;
    const resp = await api("DELETE", "/api/v1.0/session");
    logoutButton.disabled = false;
    if (resp.errno === RET.OK) {
      showGuest("您已退出登录");
      // The focused button just disappeared: move focus to the next useful control.
      document.getElementById("login-link").focus();
    } else {
      formError.textContent = resp.errmsg || "退出失败，请稍后重试";
    }
  });

  async function checkSession() {
    const resp = await api("GET", "/api/v1.0/session");
    if (resp.errno === RET.OK && resp.data && resp.data.name) showUser(resp.data.name);
    else if (resp.errno === RET.SESSIONERR) showGuest("");
    else showGuest(resp.errmsg ? `无法确认登录状态：${resp.errmsg}` : "");
  }

  checkSession();
  // Back/forward cache: the page comes back as it was, but the login state may have changed.
  window.addEventListener("pageshow", (event) => {
    if (event.persisted) checkSession();
  });
})();
