/* index.html: who is logged in (GET /api/v1.0/session), logout (DELETE). */
"use strict";

(() => {
  const { RET, api, byId } = Ihome;
  const status = byId("index-status");
  const userPanel = byId("user-panel");
  const guestPanel = byId("guest-panel");
  const logoutButton = byId("logout");

  function showUser(name) {
    byId("user-name").textContent = name; // textContent: the name is data, never markup
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
    if (!(await Ihome.logOut(logoutButton, byId("form-err")))) return;
    showGuest("您已退出登录");
    // The focused button just disappeared: move focus to the next useful control.
    byId("login-link").focus();
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
