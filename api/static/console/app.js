// app.js: the console's shell. Login (the API key is kept in sessionStorage, never in a URL),
// hash routing, mounting a view into <main>, the nav and the banner.
//
// A view is views/<name>.js exporting `mount(root, ctx)`, which returns an unmount function.
// To add a page: write the module, add its route to ROUTES, reload.

import { openSessionStream, openTenantStream, tokenMinter } from "/static/spool.js";
import { ApiError, client } from "./api.js";
import { h } from "./dom.js";

const KEY = "agentspool.api_key";

// [pattern of the hash's path, view module, names of the captured params]
const ROUTES = [
  [/^\/sessions\/([^/]+)\/replay$/, "replay", ["id"]],
  [/^\/sessions\/([^/]+)$/, "session", ["id"]],
  [/^\/sessions$/, "sessions", []],
  [/^\/board\/([^/]+)$/, "board", ["board_id"]],
  [/^\/board$/, "board", []],
  [/^\/agents$/, "agents", []],
  [/^\/budgets$/, "budgets", []],
  [/^\/approvals$/, "approvals", []],
];
const DEFAULT = "#/sessions";

const view = document.getElementById("view");
const nav = document.getElementById("nav");
let unmount = null;
let generation = 0;  // bumped by every render: a mount that finishes late is undone
let streams = new Set();  // opened through ctx: closed with the view, whatever it forgets

// --- the key ---------------------------------------------------------------------------------

function storedKey() {
  return sessionStorage.getItem(KEY);
}

function logOut(reason = null) {
  sessionStorage.removeItem(KEY);
  render({ loginMessage: reason });
  if (location.hash !== "#/login") history.replaceState(null, "", "#/login");
}

// --- routing ---------------------------------------------------------------------------------

// "#/sessions/ses_1/replay?at=12" -> {name: "replay", params: {id: "ses_1", at: "12"}}
export function parseHash(hash) {
  const [path, query = ""] = hash.replace(/^#/, "").split("?", 2);
  const params = Object.fromEntries(new URLSearchParams(query));
  for (const [pattern, name, names] of ROUTES) {
    const found = pattern.exec(path);
    if (found) {
      names.forEach((param, i) => { params[param] = decodeURIComponent(found[i + 1]); });
      return { name, params };
    }
  }
  return null;
}

function navigate(hash) {
  if (location.hash === hash) render();
  else location.hash = hash;
}

// Changes the hash's query without remounting (a filter the view applied itself).
function replaceQuery(query) {
  const [path] = location.hash.split("?", 1);
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query)) {
    if (value !== null && value !== undefined && value !== "") params.set(name, value);
  }
  const text = params.toString();
  history.replaceState(null, "", text ? `${path}?${text}` : path);
}

// --- the banner --------------------------------------------------------------------------------

const banner = document.getElementById("banner");
const bannerText = document.getElementById("banner-text");
document.getElementById("banner-close").addEventListener("click", () => clearNotice());

// kind: "error" (role=alert, read out at once) or "info" (role=status).
function notify(message, kind = "error") {
  banner.hidden = false;
  banner.className = `banner banner-${kind === "error" ? "error" : "info"}`;
  banner.setAttribute("role", kind === "error" ? "alert" : "status");
  bannerText.textContent = message;
}

function clearNotice() {
  banner.hidden = true;
  bannerText.textContent = "";
}

// --- mounting ----------------------------------------------------------------------------------

function teardown() {
  if (unmount) {
    try { unmount(); } catch (error) { notify(`closing the page failed: ${error.message}`); }
  }
  unmount = null;
  for (const stream of streams) stream.close();
  streams = new Set();
}

async function render({ loginMessage = null } = {}) {
  const mine = ++generation;
  teardown();
  view.replaceChildren();
  const key = storedKey();
  const route = parseHash(location.hash);
  if (!key || location.hash === "#/login") {
    nav.hidden = true;
    showLogin(loginMessage);
    return;
  }
  if (route === null) {
    history.replaceState(null, "", DEFAULT);
    render();
    return;
  }
  nav.hidden = false;
  markNav(route.name);
  await mountView(mine, route, key);
}

function markNav(name) {
  const section = { session: "sessions", replay: "sessions" }[name] || name;
  for (const link of nav.querySelectorAll("a[data-section]")) {
    if (link.dataset.section === section) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

async function mountView(mine, route, key) {
  const ctx = context(key, route.params);
  let module;
  try {
    module = await import(`./views/${route.name}.js`);
  } catch (error) {
    if (mine === generation) {
      view.append(h("p", { class: "error" }, `This page could not be loaded: ${error.message}`));
    }
    return;
  }
  if (mine !== generation) return;
  try {
    const done = await module.mount(view, ctx);
    if (mine !== generation) {
      if (typeof done === "function") done();
      return;
    }
    unmount = typeof done === "function" ? done : null;
    focusView();
  } catch (error) {
    if (mine !== generation || (error instanceof ApiError && error.status === 401)) return;
    view.append(h("p", { class: "error", role: "alert" }, failure(error)));
  }
}

// Keyboard and screen-reader users start on the new page's heading, not on the old link.
function focusView() {
  const heading = view.querySelector("h1");
  if (heading) {
    heading.setAttribute("tabindex", "-1");
    heading.focus({ preventScroll: true });
  } else {
    view.focus({ preventScroll: true });
  }
}

export function failure(error) {
  if (error instanceof ApiError) {
    const id = error.requestId ? ` (request ${error.requestId})` : "";
    return `${error.message}${id}`;
  }
  return String(error && error.message ? error.message : error);
}

// What a view gets: see console-spec in docs/DESIGN.md ("The console").
function context(key, params) {
  const refused = () => logOut("The API key was refused: log in again.");
  const api = client(key, { onUnauthorized: refused });
  const track = (stream) => { streams.add(stream); return stream; };
  const streamOptions = (opts, token) => ({
    ...opts,
    token,
    onError: (error, info) => {
      if (opts.onError) opts.onError(error, info);
      if (info.fatal) notify(`The live updates stopped: ${error.message}. Reload to try again.`);
    },
  });
  return {
    api,
    params,
    navigate,
    replaceQuery,
    notify,
    clearNotice,
    sessionStream: (id, opts = {}) => track(openSessionStream(
      id, streamOptions(opts, tokenMinter(key, { sessionId: id })))),
    tenantStream: (opts = {}) => track(openTenantStream(
      streamOptions(opts, tokenMinter(key)))),
  };
}

// --- login -------------------------------------------------------------------------------------

function showLogin(message) {
  const error = h("p", { class: "error", id: "login-error", role: "alert" }, message || "");
  error.hidden = !message;
  const input = h("input", { type: "password", name: "api_key", id: "api_key", required: true,
                             autocomplete: "off", spellcheck: "false",
                             "aria-describedby": "login-help login-error" });
  const button = h("button", { type: "submit", class: "primary" }, "Log in");
  const form = h("form", { class: "login", onsubmit: (event) => {
    event.preventDefault();
    logIn(input.value.trim(), { error, button });
  } },
  h("h1", {}, "Log in"),
  h("label", { for: "api_key" }, "API key"),
  input,
  h("p", { id: "login-help", class: "help" },
    "A key of your tenant (spk_...). It is kept in this tab only (sessionStorage) and sent as a "
    + "Bearer header, never in a URL."),
  error,
  button);
  view.append(form);
  input.focus();
}

async function logIn(key, { error, button }) {
  if (!key) return;
  button.disabled = true;
  error.hidden = true;
  try {
    await client(key).get("/v1/sessions", { limit: 1 });  // any viewer may: is the key good?
  } catch (failed) {
    error.textContent = failed instanceof ApiError && failed.status === 401
      ? "That API key was refused." : `Could not log in: ${failure(failed)}`;
    error.hidden = false;
    button.disabled = false;
    return;
  }
  sessionStorage.setItem(KEY, key);
  clearNotice();
  const next = location.hash && location.hash !== "#/login" ? location.hash : DEFAULT;
  if (location.hash === next) render();
  else location.hash = next;
}

// --- start -------------------------------------------------------------------------------------

document.getElementById("logout").addEventListener("click", () => logOut());
window.addEventListener("hashchange", () => { clearNotice(); render(); });  // a new page
window.addEventListener("unhandledrejection", (event) => notify(failure(event.reason)));
render();
