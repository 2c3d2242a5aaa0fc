// #/budgets: spend per day (the last 30 UTC days, GET /v1/usage?group_by=day) against the
// tenant's daily limit, spend per agent (group_by=agent, for a chosen period) against each
// agent's limit for that period, and every budget (GET /v1/budgets) with what is spent; in
// dollars or tokens. Live from the tenant stream's spend_recorded and budget_set.

import { h, formatTime } from "../dom.js";
import { meter, barChart } from "./chart.js";
import { coalesced, count, followTenant, on, reported, usd, useStyles } from "./common.js";

const TYPES = ["spend_recorded", "budget_set"];
const DAYS = 30;
const PERIODS = [["day", "Today"], ["month", "This month"], ["total", "All time"]];
const METRICS = [["usd", "Dollars"], ["tokens", "Tokens"]];

export async function mount(root, ctx) {
  useStyles();
  const choice = { metric: "usd", period: "month" };
  const charts = h("div", { class: "charts", "aria-live": "polite" });
  const table = h("div", { class: "table-wrap" });
  const toggles = h("div", { class: "toggles" },
    toggleGroup("Show", METRICS, choice, "metric", () => draw()),
    toggleGroup("Agents over", PERIODS, choice, "period", () => refresh()));
  root.append(h("h1", {}, "Budgets and spend"), toggles, charts,
              h("h2", {}, "Budgets"), table);

  let data = null;
  const phone = matchMedia("(max-width: 40rem)");  // as views.css says a phone is
  const draw = () => {
    if (data === null) return;
    const narrow = phone.matches;
    charts.replaceChildren(dayChart(data, choice.metric, narrow),
                           agentChart(data, choice, narrow));
    table.replaceChildren(budgetTable(data));
  };
  const refresh = coalesced(reported(ctx, async () => {
    data = await load(ctx, choice.period);
    draw();
  }));
  const stream = followTenant(ctx, TYPES, () => refresh());
  phone.addEventListener("change", draw);
  refresh();
  return () => {
    phone.removeEventListener("change", draw);
    refresh.stop();
    stream.close();
  };
}

// Buttons that pick one of `options` for `choice[field]` (aria-pressed says which).
function toggleGroup(label, options, choice, field, changed) {
  const buttons = options.map(([value, text]) => on(
    h("button", { type: "button", "data-value": value,
                  "aria-pressed": String(choice[field] === value) }, text),
    "click", () => {
      choice[field] = value;
      for (const button of buttons) {
        button.setAttribute("aria-pressed", String(button.dataset.value === value));
      }
      changed();
    }));
  return h("div", { class: "toggle", role: "group", "aria-label": label },
           h("span", { class: "toggle-label" }, `${label}:`), ...buttons);
}

async function collect(ctx, path, query = {}) {
  const items = [];
  for await (const item of ctx.api.pages(path, query)) items.push(item);
  return items;
}

function utcDay(date) {
  return date.toISOString().slice(0, 10);
}

// The first UTC day of the period (null: all time).
function periodStart(period, now) {
  if (period === "day") return utcDay(now);
  if (period === "month") return `${utcDay(now).slice(0, 7)}-01`;
  return null;
}

async function load(ctx, period) {
  const now = new Date();
  const first = new Date(now.getTime() - (DAYS - 1) * 86_400_000);
  const from = periodStart(period, now);
  const [budgets, days, byAgent, agents] = await Promise.all([
    collect(ctx, "/v1/budgets"),
    collect(ctx, "/v1/usage", { group_by: "day", from: utcDay(first) }),
    collect(ctx, "/v1/usage", from ? { group_by: "agent", from } : { group_by: "agent" }),
    collect(ctx, "/v1/agents"),
  ]);
  const dayKeys = [];
  for (let index = 0; index < DAYS; index += 1) {
    dayKeys.push(utcDay(new Date(first.getTime() + index * 86_400_000)));
  }
  return { budgets, days, dayKeys, byAgent, agents, period };
}

function limitOf(budgets, scope, period, metric) {
  const budget = budgets.find((b) => b.scope === scope);
  const limit = budget && budget.limits[period];
  return limit ? limit[metric] : null;
}

function formatter(metric) {
  return metric === "usd" ? usd : count;
}

function dayChart(data, metric, narrow) {
  const spent = new Map(data.days.map((row) => [row.key, row[metric]]));
  const limit = limitOf(data.budgets, "tenant", "day", metric);
  const rows = data.dayKeys.map((key) => {
    const value = spent.get(key) || 0;
    return { key, label: key.slice(5), value, over: limit != null && value > limit };
  });
  return barChart({ name: "per-day", title: `Spend per day, last ${DAYS} days (UTC)`, rows,
                    limit, limitLabel: "daily limit", format: formatter(metric), narrow });
}

function agentChart(data, { metric, period }, narrow) {
  const names = new Map(data.agents.map((agent) => [agent.id, agent.name]));
  const spent = new Map(data.byAgent.map((row) => [row.key, row[metric]]));
  // every agent that spent, or has a limit for the period
  const ids = new Set([...spent.keys(), ...data.budgets
    .filter((b) => b.scope.startsWith("agent:") && limitOf(data.budgets, b.scope, period, metric) != null)
    .map((b) => b.scope.slice("agent:".length))]);
  const rows = [...ids].map((id) => {
    const value = spent.get(id) || 0;
    const limit = limitOf(data.budgets, `agent:${id}`, period, metric);
    return { key: id, label: names.get(id) || id, value, limit,
             over: limit != null && value > limit };
  });
  const when = PERIODS.find(([value]) => value === period)[1].toLowerCase();
  return barChart({ name: "per-agent", title: `Spend per agent, ${when}`, rows,
                    format: formatter(metric), narrow });
}

function scopeName(scope, agents) {
  if (scope === "tenant") return "The tenant";
  const [kind, id] = scope.split(":");
  const agent = kind === "agent" && agents.find((a) => a.id === id);
  return agent ? `Agent ${agent.name} (${id})` : `${kind[0].toUpperCase()}${kind.slice(1)} ${id}`;
}

function budgetTable(data) {
  if (!data.budgets.length) return h("p", { class: "empty" }, "No budgets are set.");
  const rows = [];
  for (const budget of data.budgets) {
    for (const [period, status] of Object.entries(budget.limits)) {
      for (const [metric, spentKey] of [["usd", "spent_usd"], ["tokens", "spent_tokens"]]) {
        if (status[metric] == null) continue;
        const format = metric === "usd" ? usd : (n) => `${count(n)} tokens`;
        rows.push(h("tr", { "data-scope": budget.scope, "data-period": period },
          h("th", { scope: "row" }, scopeName(budget.scope, data.agents)),
          h("td", { "data-label": "Period" }, period),
          h("td", { "data-label": "Limit" }, format(status[metric])),
          h("td", { "data-label": "Spent" }, format(status[spentKey]), " ",
            meter(status[spentKey], status[metric], format)),
          h("td", { "data-label": "State" }, status.exceeded ? "exceeded" : "within"),
          h("td", { "data-label": "Resets" },
            status.resets_at ? formatTime(status.resets_at) : "never")));
      }
    }
  }
  return h("table", { class: "budgets stack" },
    h("thead", {}, h("tr", {}, ...["Scope", "Period", "Limit", "Spent", "State", "Resets"]
      .map((name) => h("th", { scope: "col" }, name)))),
    h("tbody", {}, ...rows));
}
