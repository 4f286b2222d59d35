// The dashboard's shell: who is logged in, the navigation, the theme, and a router
// over the URL's fragment (#/tenants/acme). Each page is a module exporting
// `render(view, ctx)`; it registers what must stop when the page is left (live
// subscriptions, followed logs) with `ctx.cleanup`. Controls that change something are
// shown only to roles the API would let use them (`ctx.can`), and the API still
// decides: a refused action says why.

import * as api from "./api.js";
import { h, replace, notice } from "./dom.js";
import * as live from "./live.js";
import * as login from "./login.js";
import * as overview from "./overview.js";
import * as tenants from "./tenants.js";
import * as tenant from "./tenant.js";
import * as logs from "./logs.js";
import * as nodes from "./nodes.js";
import * as activity from "./activity.js";
import * as operations from "./operations.js";
import * as plan from "./plan.js";

const RANK = { viewer: 1, developer: 2, admin: 3 };
const PAGES = [
  ["overview", "Overview", overview.render],
  ["tenants", "Tenants", tenants.render],
  ["nodes", "Nodes", nodes.render],
  ["logs", "Logs", logs.render],
  ["events", "Events", activity.events],
  ["runs", "Agent runs", activity.runs],
  ["provisioning", "Provisioning", operations.provisioning],
  ["releases", "Releases", operations.releases],
  ["audit", "Audit", operations.audit],
  ["plan", "Plan", plan.render],
];

const session = { who: null };
let cleanups = [];

function ctxFor(params) {
  return {
    who: session.who,
    params,
    can: (role) => Boolean(session.who) && (RANK[session.who.role] || 0) >= (RANK[role] || 99),
    cleanup: (fn) => cleanups.push(fn),
    go,
  };
}

export function go(path) {
  if (location.hash === `#${path}`) route();
  else location.hash = path;
}

function parse() {
  const raw = location.hash.replace(/^#/, "") || "/overview";
  const [path, query] = raw.split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  return { parts, params: new URLSearchParams(query || "") };
}

async function route() {
  for (const fn of cleanups.splice(0)) {
    try {
      fn();
    } catch (error) {
      console.error(error);
    }
  }
  const view = document.getElementById("main");
  if (location.hash.startsWith("#login=")) return redeem(location.hash.slice("#login=".length));
  const { parts, params } = parse();
  if (!session.who && parts[0] !== "login") {
    if (!(await identify())) return go("/login");
  }
  markNav(parts[0]);
  const ctx = ctxFor(params);
  let render;
  if (parts[0] === "login") render = login.render;
  else if (parts[0] === "tenants" && parts[1]) render = (v, c) => tenant.render(v, c, parts[1]);
  else render = (PAGES.find(([key]) => key === parts[0]) || PAGES[0])[2];
  replace(view, h("p", { class: "muted" }, "Loading…"));
  try {
    await render(view, ctx);
  } catch (error) {
    if (error instanceof api.ApiError && error.status === 401) return;
    replace(view, notice(`Could not load this page: ${error.message}`));
  }
  const title = view.querySelector("h1");
  document.title = title ? `${title.textContent} · Armillary` : "Armillary";
}

async function identify() {
  try {
    session.who = await api.get("/api/v1/auth/whoami");
  } catch {
    session.who = null;
  }
  showWho();
  if (session.who) live.start();
  return Boolean(session.who);
}

async function redeem(code) {
  history.replaceState(null, "", "#/overview"); // the code leaves the address bar at once
  try {
    const opened = await api.send("POST", "/api/v1/auth/redeem", { code });
    api.remember(opened.csrfToken);
    await identify();
    route();
  } catch (error) {
    location.hash = "#/login";
    setTimeout(() => {
      const view = document.getElementById("main");
      view.prepend(notice(error.message));
    }, 0);
  }
}

export async function loggedIn(opened) {
  api.remember(opened.csrfToken);
  await identify();
  go("/overview");
}

async function logout() {
  try {
    await api.send("POST", "/api/v1/auth/logout");
  } catch {
    // the session may be gone already: logged out either way
  }
  api.remember(null);
  live.stop();
  session.who = null;
  showWho();
  go("/login");
}

function showWho() {
  const who = document.getElementById("who");
  const out = document.getElementById("logout");
  const nav = document.getElementById("nav");
  if (session.who) {
    replace(who, `${session.who.id} (${session.who.role})`);
    out.hidden = false;
    replace(nav, h("ul", {}, PAGES.map(([key, label]) => h("li", {}, h("a", { href: `#/${key}`, dataset: { page: key } }, label)))));
  } else {
    replace(who);
    out.hidden = true;
    replace(nav);
  }
}

function markNav(page) {
  for (const a of document.querySelectorAll("#nav a")) {
    if (a.dataset.page === page) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

const THEME_KEY = "armillary.theme";

function applyTheme(theme) {
  if (theme) document.documentElement.dataset.theme = theme;
  else delete document.documentElement.dataset.theme;
}

function toggleTheme() {
  const dark = document.documentElement.dataset.theme
    ? document.documentElement.dataset.theme === "dark"
    : matchMedia("(prefers-color-scheme: dark)").matches;
  const theme = dark ? "light" : "dark";
  localStorage.setItem(THEME_KEY, theme);
  applyTheme(theme);
}

function boot() {
  applyTheme(localStorage.getItem(THEME_KEY));
  document.getElementById("theme").addEventListener("click", toggleTheme);
  document.getElementById("logout").addEventListener("click", logout);
  live.onStatus((status) => {
    const badge = document.getElementById("live");
    badge.textContent = status;
    badge.dataset.status = status;
  });
  api.onRefused((error) => {
    if (error.status === 401 && session.who) {
      session.who = null;
      live.stop();
      showWho();
      go("/login");
    }
  });
  window.addEventListener("hashchange", route);
  route();
}

boot();
