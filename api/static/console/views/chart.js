// Bar charts as inline SVG built with DOM calls (no library, no inline style: CSP), each with
// a limit line, and the same numbers as a table (what a screen reader reads, and what a
// colour cannot say).

import { h } from "../dom.js";

const NS = "http://www.w3.org/2000/svg";
const WIDE = 640;  // the drawing's width in its own units; a phone's chart is drawn narrower
const HEIGHT = 240;
const PAD = { top: 16, right: 12, bottom: 40, left: 64 };

function svg(tag, attrs = {}, text = null) {
  const node = document.createElementNS(NS, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  if (text !== null) node.textContent = text;
  return node;
}

// A figure: bars of `rows` ({key, label, value}) and, if `limit` is a number, a dashed line
// across at it. `format` turns a value into text.
// `narrow`: drawn for a phone (fewer units across, so the text stays readable).
export function barChart({ name, title, rows, limit = null, limitLabel = "limit", format,
                           narrow = false }) {
  const width = narrow ? WIDE * 0.6 : WIDE;
  const highest = rows.map((row) => Math.max(row.value, row.limit ?? 0));
  const max = Math.max(1e-12, limit ?? 0, ...highest) * 1.1;
  const plotW = width - PAD.left - PAD.right;
  const plotH = HEIGHT - PAD.top - PAD.bottom;
  const y = (value) => PAD.top + plotH - (value / max) * plotH;
  const chart = svg("svg", { viewBox: `0 0 ${width} ${HEIGHT}`, role: "img",
                             "aria-label": title, "data-chart": name, class: "chart" });
  chart.append(svg("title", {}, title));
  for (const tick of [0, max / 2 / 1.1, max / 1.1]) {
    chart.append(svg("line", { class: "grid", x1: PAD.left, x2: width - PAD.right,
                               y1: y(tick), y2: y(tick) }));
    chart.append(svg("text", { class: "tick", x: PAD.left - 6, y: y(tick) + 4,
                               "text-anchor": "end" }, format(tick)));
  }
  const slot = plotW / Math.max(1, rows.length);
  const labelEvery = Math.ceil(rows.length / (narrow ? 5 : 10));
  rows.forEach((row, index) => {
    const x = PAD.left + index * slot;
    const barW = Math.max(1, Math.min(slot * 0.7, 48));
    const barX = x + (slot - barW) / 2;
    const bar = svg("rect", { class: row.over ? "bar over" : "bar", x: barX,
                              y: y(row.value), width: barW,
                              height: Math.max(0, PAD.top + plotH - y(row.value)),
                              "data-key": row.key, "data-value": row.value });
    bar.append(svg("title", {}, `${row.label}: ${format(row.value)}`));
    chart.append(bar);
    if (row.limit != null) {  // this bar's own limit: a mark across its slot
      chart.append(svg("line", { class: "limit", x1: barX - 8, x2: barX + barW + 8,
                                 y1: y(row.limit), y2: y(row.limit), "data-key": row.key,
                                 "data-value": row.limit }));
      if (rows.length <= 6) {
        chart.append(svg("text", { class: "limit-label", x: barX + barW + 12,
                                   y: y(row.limit) + 4 }, `limit ${format(row.limit)}`));
      }
    }
    if (index % labelEvery === 0) {
      chart.append(svg("text", { class: "label", x: x + slot / 2, y: HEIGHT - PAD.bottom + 16,
                                 "text-anchor": "middle" }, shorten(row.label)));
    }
  });
  if (limit != null) {
    chart.append(svg("line", { class: "limit", x1: PAD.left, x2: width - PAD.right,
                               y1: y(limit), y2: y(limit), "data-value": limit }));
    chart.append(svg("text", { class: "limit-label", x: width - PAD.right, y: y(limit) - 4,
                               "text-anchor": "end" }, `${limitLabel} ${format(limit)}`));
  }
  chart.append(svg("line", { class: "axis", x1: PAD.left, x2: width - PAD.right,
                             y1: y(0), y2: y(0) }));
  return h("figure", { class: "chart-figure" },
           h("figcaption", {}, title), chart, dataTable(rows, limit, limitLabel, format));
}

function shorten(text) {
  return text.length > 12 ? `${text.slice(0, 11)}…` : text;
}

function rowNote(row, format) {
  const note = row.limit != null ? `limit ${format(row.limit)}` : "";
  return row.over ? `${note}${note ? ", " : ""}over the limit` : note;
}

function dataTable(rows, limit, limitLabel, format) {
  const body = rows.map((row) => h("tr", {}, h("th", { scope: "row" }, row.label),
                                   h("td", {}, format(row.value)),
                                   h("td", {}, rowNote(row, format))));
  return h("details", { class: "chart-data" }, h("summary", {}, "The numbers"),
           h("table", {},
             h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Key"),
                              h("th", { scope: "col" }, "Spent"),
                              h("th", { scope: "col" }, limit != null
                                ? `${limitLabel} ${format(limit)}` : "No limit"))),
             h("tbody", {}, ...body)));
}

// A thin meter: how much of a limit is spent (a bar, the spent text beside it).
export function meter(spent, limit, format) {
  const share = limit ? Math.min(1, spent / limit) : 0;
  const node = svg("svg", { viewBox: "0 0 100 8", class: "meter", role: "img",
                            "aria-label": `${format(spent)} of ${format(limit)}` });
  node.append(svg("rect", { class: "meter-track", x: 0, y: 0, width: 100, height: 8 }));
  node.append(svg("rect", { class: spent >= limit ? "meter-fill over" : "meter-fill",
                            x: 0, y: 0, width: share * 100, height: 8 }));
  return node;
}
