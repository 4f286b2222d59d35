// The login page: a user name and password, answered with a session cookie and the
// CSRF token the dashboard sends with every change (`armillary dashboard` logs in
// with a one-time link instead, handled by the shell).

import * as api from "./api.js";
import { h, replace, notice } from "./dom.js";
import { loggedIn } from "./app.js";

export function render(view) {
  const error = h("div", { "aria-live": "assertive" });
  const name = h("input", { id: "login-name", name: "name", autocomplete: "username", required: true });
  const password = h("input", { id: "login-password", name: "password", type: "password", autocomplete: "current-password", required: true });
  const button = h("button", { type: "submit" }, "Log in");
  const form = h(
    "form",
    { class: "login", "aria-labelledby": "login-title" },
    h("h1", { id: "login-title" }, "Log in"),
    error,
    h("label", { for: "login-name" }, "User name"),
    name,
    h("label", { for: "login-password" }, "Password"),
    password,
    button,
    h("p", { class: "muted" }, "On the machine running `armillary up`, `armillary dashboard` opens this page logged in."),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    button.disabled = true;
    try {
      const opened = await api.send("POST", "/api/v1/auth/login", { name: name.value, password: password.value });
      await loggedIn(opened);
    } catch (failure) {
      replace(error, notice(failure.message));
      button.disabled = false;
      password.focus();
    }
  });
  replace(view, form);
  name.focus();
}
