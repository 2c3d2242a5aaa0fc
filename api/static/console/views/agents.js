// #/agents: every agent with its view (GET /v1/agents): status, version, last heartbeat,
// sessions, turns, tokens and spend; live from the tenant stream (agent events, heartbeats,
// spend, turns), and re-read every 15 s since "offline" is computed when read.

import { formatCost, formatTokens, h, statusBadge, timeElement } from "../dom.js";
import { coalesced, followTenant, reported, useStyles } from "./common.js";

const TYPES = ["agent_created", "agent_updated", "agent_archived", "agent_heartbeat",
               "spend_recorded", "session_created", "turn_started", "session_done"];
const EVERY_MS = 15_000;
const HEADS = ["Agent", "Status", "Version", "Heartbeat", "Sessions", "Turns", "Tokens", "Spend"];
// Each cell's column, said beside it when a phone stacks the rows (views.css).
const LABELS = { status: "Status", version: "Version", heartbeat: "Heartbeat",
                 sessions: "Sessions", turns: "Turns", tokens: "Tokens", usd: "Spend" };

export async function mount(root, ctx) {
  useStyles();
  const body = h("tbody", {});
  const table = h("table", { class: "agents stack" },
    h("thead", {}, h("tr", {}, ...HEADS.map((name) => h("th", { scope: "col" }, name)))),
    body);
  root.append(h("h1", {}, "Agents"), h("div", { class: "table-wrap" }, table));

  const refresh = coalesced(reported(ctx, async () => {
    const agents = [];
    for await (const agent of ctx.api.pages("/v1/agents", {})) agents.push(agent);
    body.replaceChildren(...(agents.length ? agents.map(row)
      : [h("tr", {}, h("td", { colspan: "8", class: "empty" }, "No agents yet."))]));
  }));
  const stream = followTenant(ctx, TYPES, () => refresh());
  const timer = setInterval(() => refresh(), EVERY_MS);
  refresh();
  return () => {
    clearInterval(timer);
    refresh.stop();
    stream.close();
  };
}

function row(agent) {
  const view = agent.view || {};
  const status = agent.status === "archived" ? "archived" : (view.status || "unknown");
  const beat = view.last_heartbeat_at;
  return h("tr", { "data-agent-id": agent.id },
    h("th", { scope: "row" }, h("span", { class: "name" }, agent.name), " ",
      h("code", { class: "muted" }, agent.id)),
    cell("status", statusBadge(status)),
    cell("version", `v${agent.version}`),
    cell("heartbeat", beat ? timeElement(beat) : "never"),
    cell("sessions", `${formatTokens(view.active_sessions)} active of `
      + formatTokens(view.sessions), "num"),
    cell("turns", formatTokens(view.turns), "num"),
    cell("tokens", formatTokens(view.tokens), "num"),
    cell("usd", formatCost(view.cost_nanos), "num"));
}

function cell(field, content, kind = null) {
  return h("td", { "data-field": field, "data-label": LABELS[field], class: kind }, content);
}
