// The sessions list: GET /v1/sessions (summaries), filtered by agent and status (kept in the
// hash, so a filtered list can be linked to), newest first, and live: the tenant's stream of
// session events says when to read the list again (with min_position, so the read sees them).

import { h, formatCost, formatTokens, statusBadge, timeElement } from "../dom.js";

const STATUSES = ["idle", "running", "requires_action", "archived"];
const MAX_ROWS = 2000;  // a console page, not an export: past this, filter
// What changes a summary (status, turns, tokens, cost); not the deltas of a streaming reply.
const CHANGES = ["session_created", "session_archived", "user_message", "turn_started",
                 "tool_use", "tool_result", "approval_requested", "approval_resolved",
                 "spend_recorded", "session_interrupted", "session_done"];
const SETTLE_MS = 250;  // a burst of events is one reload

export async function mount(root, ctx) {
  const filters = { agent_id: ctx.params.agent_id || "", status: ctx.params.status || "" };
  const agents = new Map();  // id -> name
  const rows = new Map();  // session id -> <tr>
  const tbody = h("tbody");
  const empty = h("p", { class: "muted", hidden: true }, "No sessions match.");
  const capped = h("p", { class: "help", hidden: true },
                   `Showing the first ${MAX_ROWS}: filter to see the others.`);
  const agentSelect = h("select", { id: "filter-agent", name: "agent_id" },
                        h("option", { value: "" }, "All agents"));
  const statusSelect = h("select", { id: "filter-status", name: "status" },
                         h("option", { value: "" }, "All statuses"),
                         STATUSES.map((s) => h("option", { value: s }, s)));

  root.append(
    h("h1", {}, "Sessions"),
    h("form", { class: "filters", role: "search", "aria-label": "Filter sessions",
                onsubmit: (event) => event.preventDefault() },
      h("div", {}, h("label", { for: "filter-agent" }, "Agent"), agentSelect),
      h("div", {}, h("label", { for: "filter-status" }, "Status"), statusSelect)),
    h("div", { class: "table-wrap" },
      h("table", { class: "sessions" },
        h("caption", { class: "sr-only" }, "Sessions, newest first"),
        h("thead", {}, h("tr", {},
          h("th", { scope: "col" }, "Session"), h("th", { scope: "col" }, "Status"),
          h("th", { scope: "col" }, "Agent"), h("th", { scope: "col", class: "num" }, "Turns"),
          h("th", { scope: "col", class: "num" }, "Tokens"),
          h("th", { scope: "col", class: "num" }, "Cost"),
          h("th", { scope: "col" }, "Last event"))),
        tbody)),
    empty, capped);

  await loadAgents();
  agentSelect.value = filters.agent_id;
  statusSelect.value = filters.status;
  let lastPosition = await reload();

  // Reads the list (as of at least `minPosition`) and updates the rows in place.
  async function reload(minPosition = null) {
    const found = [];
    for await (const summary of ctx.api.pages("/v1/sessions", {
      ...filters, limit: 500, min_position: minPosition })) {
      found.push(summary);
      if (found.length >= MAX_ROWS) break;
    }
    capped.hidden = found.length < MAX_ROWS;
    if (found.some((s) => s.agent_id && !agents.has(s.agent_id))) await loadAgents();
    show(found);
    return found.reduce((most, s) => Math.max(most, s.last_position), minPosition || 0);
  }

  async function loadAgents() {
    for await (const agent of ctx.api.pages("/v1/agents", { limit: 500 })) {
      if (!agents.has(agent.id)) {
        agentSelect.append(h("option", { value: agent.id }, agent.name));
      }
      agents.set(agent.id, agent.name);
    }
  }

  function show(summaries) {
    summaries.sort((a, b) => (a.created_at < b.created_at ? 1 : a.created_at > b.created_at ? -1
      : a.id < b.id ? 1 : -1));
    const keep = new Set(summaries.map((s) => s.id));
    for (const [id, row] of rows) {
      if (!keep.has(id)) { row.remove(); rows.delete(id); }
    }
    summaries.forEach((summary, index) => {
      let row = rows.get(summary.id);
      const fresh = rowOf(summary);
      if (row) {
        if (row.dataset.stamp !== fresh.dataset.stamp) {
          row.replaceWith(fresh);  // changed: the new cells (focus stays on the unchanged)
          row = fresh;
        }
      } else {
        row = fresh;
      }
      rows.set(summary.id, row);
      if (tbody.children[index] !== row) tbody.insertBefore(row, tbody.children[index] || null);
    });
    empty.hidden = summaries.length > 0;
  }

  function rowOf(s) {
    const agent = s.agent_id ? (agents.get(s.agent_id) || s.agent_id) : "none";
    const row = h("tr", { "data-session-id": s.id },
      h("td", {}, h("a", { href: `#/sessions/${encodeURIComponent(s.id)}` }, s.title || s.id),
        s.title ? h("div", { class: "help mono" }, s.id) : null),
      h("td", { class: "status", "data-label": "Status" }, statusBadge(s.status)),
      h("td", { "data-label": "Agent" }, agent),
      h("td", { class: "num", "data-label": "Turns" }, String(s.turns)),
      h("td", { class: "num", "data-label": "Tokens" }, formatTokens(s.tokens)),
      h("td", { class: "num", "data-label": "Cost" }, formatCost(s.cost_nanos)),
      h("td", { "data-label": "Last event" }, timeElement(s.updated_at)));
    row.dataset.stamp = `${s.last_position}:${s.status}:${agent}`;
    return row;
  }

  // Live: a burst of session events is one read of the list, after the last of them.
  let pending = null;
  let timer = null;
  let reading = false;
  async function settle() {
    timer = null;
    if (reading) { timer = setTimeout(settle, SETTLE_MS); return; }
    const wanted = pending;
    pending = null;
    reading = true;
    try {
      lastPosition = Math.max(lastPosition, await reload(wanted));
    } catch (error) {
      ctx.notify(`Could not refresh the sessions: ${error.message}`);
    } finally {
      reading = false;
    }
  }
  const stream = ctx.tenantStream({
    streamType: "session",
    types: CHANGES,
    after: lastPosition,
    onEvent: (envelope) => {
      pending = Math.max(pending || 0, envelope.position);
      if (timer === null) timer = setTimeout(settle, SETTLE_MS);
    },
  });

  function refilter() {
    filters.agent_id = agentSelect.value;
    filters.status = statusSelect.value;
    ctx.replaceQuery(filters);
    pending = Math.max(pending || 0, lastPosition);  // read in turn with the live reads
    clearTimeout(timer);
    timer = setTimeout(settle, 0);
  }
  agentSelect.addEventListener("change", refilter);
  statusSelect.addEventListener("change", refilter);

  // The relative times age while the page is open.
  const ticker = setInterval(() => {
    for (const time of tbody.querySelectorAll("time")) {
      time.replaceWith(timeElement(time.getAttribute("datetime")));
    }
  }, 30_000);

  return () => {
    stream.close();
    clearTimeout(timer);
    clearInterval(ticker);
  };
}
