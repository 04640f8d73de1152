/* Proof of work for the SMS-code forms (register.js, smscode.js), with the vendored ALTCHA
 * widget.
 *
 * The server asks for it only when a fraud segment of the request is elevated: REQERR with
 * data.reason "pow_required" and data.challenge. IhomePow.solve(challenge, container) shows the
 * widget in `container`, lets it solve the challenge in a Web Worker (the page stays
 * responsive) and resolves with ALTCHA's base64 payload, which the page sends back as
 * `altcha`. A module script: it runs after the widget module has defined <altcha-widget>.
 */
import "/static/vendor/altcha/altcha.min.js";

const PBKDF2_WORKER = "/static/vendor/altcha/workers/pbkdf2.js";
// The "external" build ships no workers of its own (CSP: scripts only from our origin).
for (const algorithm of ["PBKDF2/SHA-256", "PBKDF2/SHA-384", "PBKDF2/SHA-512"]) {
  globalThis.$altcha.algorithms.set(algorithm, () => new Worker(PBKDF2_WORKER));
}

function widgetReady(widget) {
  if (typeof widget.verify === "function" && typeof widget.configure === "function") {
    return Promise.resolve();
  }
  return new Promise((resolve) => widget.addEventListener("load", resolve, { once: true }));
}

async function solve(challenge, container) {
  await customElements.whenDefined("altcha-widget");
  const widget = document.createElement("altcha-widget");
  widget.setAttribute("auto", "off");
  widget.setAttribute("name", "altcha");
  container.replaceChildren(widget);
  container.hidden = false;
  await widgetReady(widget);
  widget.configure({ challenge, hideLogo: true, hideFooter: true, minDuration: 0 });
  return new Promise((resolve, reject) => {
    widget.addEventListener("verified", (event) => resolve(event.detail.payload), { once: true });
    widget.addEventListener("statechange", (event) => {
      if (event.detail.state === "error") reject(new Error(event.detail.error || "pow failed"));
    });
    widget.verify();
  });
}

window.IhomePow = { solve };
window.dispatchEvent(new Event("ihome-pow-ready"));
