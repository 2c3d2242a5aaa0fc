// What the board, agents, budgets, approvals and replay views share (not a view: no mount):
// their stylesheet, number formats, a coalescing refresher, a filtered tenant stream, and
// small DOM helpers on top of dom.js.

import { append } from "../dom.js";

const SHEET = "/static/console/views.css";

// The views' own stylesheet, linked once (CSP allows a stylesheet of the origin, not inline
// style), so the shell's style.css stays the core's.
export function useStyles() {
  if (document.querySelector(`link[href="${SHEET}"]`)) return;
  const link = document.createElement("link");
  link.rel = "stylesheet";
  link.href = SHEET;
  document.head.append(link);
}

// "$0.0123": dollars with enough digits that a small spend is not shown as 0.
export function usd(value) {
  if (value == null) return "none";
  const digits = value !== 0 && Math.abs(value) < 1 ? 4 : 2;
  return `$${value.toFixed(digits)}`;
}

export function count(value) {
  return value == null ? "none" : Number(value).toLocaleString("en-US");
}

// Runs `refresh` once for a burst of calls (a stream replaying many events at once), never two
// at a time, and once more if called while it ran.
export function coalesced(refresh, delayMs = 150) {
  let timer = null;
  let running = false;
  let again = false;
  let stopped = false;
  const run = async () => {
    timer = null;
    if (stopped) return;
    if (running) {
      again = true;
      return;
    }
    running = true;
    try {
      await refresh();
    } finally {
      running = false;
      if (again && !stopped) {
        again = false;
        schedule();
      }
    }
  };
  const schedule = () => {
    if (timer === null && !stopped) timer = setTimeout(run, delayMs);
  };
  schedule.stop = () => {
    stopped = true;
    clearTimeout(timer);
  };
  return schedule;
}

// The tenant stream of only `types` (filtered on the server), calling `onEvent` for each. The
// shell reports a stream that stopped; spool.js retries what can be retried by itself.
export function followTenant(ctx, types, onEvent, extra = {}) {
  return ctx.tenantStream({ types, ...extra, onEvent });
}

// Shows what went wrong with an action in the banner; the view stays usable.
export function reported(ctx, action) {
  return async (...args) => {
    try {
      await action(...args);
    } catch (error) {
      ctx.notify(error.message || String(error), "error");
    }
  };
}

// An element, listened to: `on(h("button", ...), "click", fn)`.
export function on(element, type, listener) {
  element.addEventListener(type, listener);
  return element;
}

export const enc = encodeURIComponent;

// Replaces an element's children (null and false skipped, unlike replaceChildren's "null").
export function fill(element, ...children) {
  element.replaceChildren();
  return append(element, children);
}
