// The login page: the hub's own login (POST /api/login sets the session cookie), then the board.

import * as api from "./api.js";
import { h, replace } from "./dom.js";
import { LANGUAGES, currentLanguage, t } from "./i18n.js";
import { enableSound } from "./sound.js";

export function mount(root, { message, onLoggedIn, onLanguage }) {
  const error = h("p", { class: "error", role: "alert", hidden: !message }, message || "");
  const name = h("input", { id: "login-name", name: "name", autocomplete: "username", required: true, maxlength: 64, autofocus: true });
  const password = h("input", { id: "login-password", name: "password", type: "password", autocomplete: "current-password", required: true });
  const submit = h("button", { type: "submit", class: "primary" }, t("login.submit"));
  const form = h("form", { class: "login", onsubmit: async (event) => {
    event.preventDefault();
    enableSound(); // a click: the browser lets the page sound its alerts from now on
    submit.disabled = true;
    try {
      const me = await api.post("/api/login", { name: name.value, password: password.value });
      await onLoggedIn(me);
    } catch (err) {
      error.hidden = false;
      error.textContent = err.status === 401 ? t("login.wrong") : err.status === 429 ? t("login.limited", { s: err.retryAfter || 60 }) : t("login.hub_unreachable");
      submit.disabled = false;
    }
  } },
    h("h1", {}, t("app.title")),
    h("p", { class: "muted" }, t("login.intro")),
    error,
    h("label", { for: "login-name" }, t("login.name")), name,
    h("label", { for: "login-password" }, t("login.password")), password,
    submit,
    h("p", { class: "language" }, Object.entries(LANGUAGES).map(([code, text]) =>
      h("button", { type: "button", class: code === currentLanguage() ? "link active" : "link", onclick: () => onLanguage(code) }, text))),
  );
  replace(root, h("section", { class: "login-page" }, form));
  name.focus();
}
