// dom.js: building elements without innerHTML, and the console's formats.
//
//   h("a", { href: "#/sessions", class: "row" }, "Sessions", h("span", {}, count))
//
// Text children become text nodes (never parsed as HTML), so data from the API is safe to pass.

// An element: attrs are attributes, except `on<event>` (a listener), `class`, `style` (an
// object of style properties: allowed by the CSP as it is set from a module), and the
// properties a form control keeps (value, checked, disabled, hidden...). null, undefined and
// false leave an attribute out; true sets it empty. Children nest as arrays; null is skipped.
export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2).toLowerCase(), value);
    } else if (name === "style" && typeof value === "object") {
      Object.assign(element.style, value);
    } else if (PROPERTIES.has(name)) {
      element[name] = value;
    } else {
      element.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(element, children);
  return element;
}

const PROPERTIES = new Set(["value", "checked", "disabled", "hidden", "selected", "open"]);

// Appends children (strings, numbers, nodes, arrays of them; null and false are skipped).
export function append(parent, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(parent, child);
    else if (child instanceof Node) parent.appendChild(child);
    else parent.appendChild(document.createTextNode(String(child)));
  }
  return parent;
}

// USD from nanos (USD x 1e9, as the API counts): cents once there are some, else enough
// digits to show a cheap call is not free.
export function formatCost(nanos) {
  const usd = Number(nanos || 0) / 1e9;
  if (usd === 0) return "$0.00";
  if (usd >= 0.01) return `$${usd.toFixed(2)}`;
  return `$${usd.toFixed(6).replace(/0+$/, "")}`;
}

export function formatTokens(tokens) {
  return Number(tokens || 0).toLocaleString("en-US");
}

// An ISO time as the reader's local date and time, to the second.
export function formatTime(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "";
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} `
    + `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
}

// "just now", "5 s ago", "3 min ago", "2 h ago", "4 d ago" (and "in ..." for a time ahead).
export function relativeTime(iso, now = Date.now()) {
  const seconds = Math.round((now - new Date(iso).getTime()) / 1000);
  if (Number.isNaN(seconds)) return "";
  const ahead = seconds < 0;
  const s = Math.abs(seconds);
  let text;
  if (s < 2) return "just now";
  else if (s < 60) text = `${s} s`;
  else if (s < 3600) text = `${Math.floor(s / 60)} min`;
  else if (s < 86400) text = `${Math.floor(s / 3600)} h`;
  else text = `${Math.floor(s / 86400)} d`;
  return ahead ? `in ${text}` : `${text} ago`;
}

// A <time> element: the relative time, the exact one as its title and datetime.
export function timeElement(iso) {
  return h("time", { datetime: iso, title: formatTime(iso) }, relativeTime(iso));
}

// A status as a word in a badge (the word carries the meaning; the colour only helps).
export function statusBadge(status) {
  return h("span", { class: `badge badge-${String(status).replace(/[^a-z_]/g, "")}` }, status);
}
