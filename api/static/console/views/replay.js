// #/sessions/<id>/replay?at=<seq>: a scrubber over the session's events showing the state
// right after event `at` (GET /v1/sessions/{id}/state?at=), so a person can step through what
// the model was sent and what it did. The scrubber is a range input (arrow keys, Home/End,
// Page Up/Down), with buttons beside it; `?at=` follows it without a remount. At the last
// event it follows the session's stream as new events come.

import { formatCost, formatTime, formatTokens, h, statusBadge } from "../dom.js";
import { enc, on, reported, useStyles } from "./common.js";

const AROUND = 5;  // events listed before and after the one shown

export async function mount(root, ctx) {
  useStyles();
  const sessionId = ctx.params.id;
  const base = `/v1/sessions/${enc(sessionId)}`;
  const latest = await ctx.api.get(`${base}/state`);
  let last = latest.last_seq;
  const clamp = (seq) => Math.min(last, Math.max(1, Math.round(seq) || last));

  const range = h("input", { type: "range", id: "replay-at", min: "1", max: String(last),
                             step: "1", value: String(clamp(Number(ctx.params.at))) });
  const where = h("span", { class: "where", id: "replay-where" });
  const step = (delta) => () => show(clamp(Number(range.value) + delta));
  const controls = h("div", { class: "scrubber" },
    h("label", { for: "replay-at" }, "Event"), range, where,
    h("div", { class: "row" },
      h("button", { type: "button", onclick: () => show(1) }, "First"),
      h("button", { type: "button", onclick: step(-1) }, "Previous"),
      h("button", { type: "button", onclick: step(1) }, "Next"),
      h("button", { type: "button", onclick: () => show(last) }, "Last")));
  const output = h("div", { class: "replay" });
  root.append(
    h("div", { class: "session-head" }, h("h1", {}, "Replay"),
      h("a", { href: `#/sessions/${enc(sessionId)}` }, `Back to session ${sessionId}`)),
    h("p", { class: "help" }, "Step through the session's events: the state shown is the "
      + "session's right after the chosen event, as the runtime folds it."),
    controls, output);

  let asked = 0;  // the seq last asked for: an answer for another one is stale
  const show = reported(ctx, async (seq) => {
    asked = seq;
    range.value = String(seq);
    describe(seq);
    ctx.replaceQuery({ at: String(seq) });
    const [state, events] = await Promise.all([
      ctx.api.get(`${base}/state`, { at: seq }),
      ctx.api.get(`${base}/events`, { after: Math.max(0, seq - AROUND - 1),
                                      limit: 2 * AROUND + 1 }),
    ]);
    if (asked !== seq) return;
    output.replaceChildren(...view(state, events.data, seq, show));
    output.dataset.at = String(seq);
  });
  const describe = (seq) => {
    where.textContent = `${seq} of ${last}`;
    range.setAttribute("aria-valuetext", `event ${seq} of ${last}`);
  };
  on(range, "input", () => show(Number(range.value)));

  // New events widen the scrubber; one left at the last event moves on with them.
  let stream = null;
  if (latest.status !== "archived") {
    stream = ctx.sessionStream(sessionId, { after: last, onEvent: (envelope, type, seq) => {
      const following = Number(range.value) === last;
      last = Math.max(last, seq);
      range.max = String(last);
      if (following) show(last);
      else describe(Number(range.value));
    } });
  }
  await show(Number(range.value));
  return () => {
    if (stream) stream.close();
  };
}

function view(state, events, seq, show) {
  const event = events.find((e) => e.seq === seq);
  return [
    h("section", { class: "replay-events", "aria-label": "Events around this one" },
      h("ol", {}, ...events.map((e) => h("li", e.seq === seq ? { "aria-current": "step" } : {},
        h("button", { type: "button", class: "link", onclick: () => show(e.seq) },
          `${e.seq} `, h("code", {}, e.type)))))),
    h("section", { class: "replay-event" },
      h("h2", {}, `Event ${seq}: `, h("code", {}, event ? event.type : "?")),
      h("p", { class: "muted" }, formatTime(state.at_time)),
      event ? h("pre", { class: "event-data" }, JSON.stringify(event.data, null, 2)) : null),
    h("section", { class: "replay-state" },
      h("h2", {}, "The session then"),
      h("ul", { class: "facts" },
        h("li", {}, "Status ", statusBadge(state.status)),
        h("li", {}, plural(state.turns.length, "turn")),
        h("li", {}, plural(state.model_calls, "model call")),
        h("li", {}, `${formatTokens(state.usage.input_tokens + state.usage.output_tokens)} tokens`),
        h("li", {}, formatCost(state.cost_nanos)),
        h("li", {}, `${state.queue.length} queued`)),
      current(state.current),
      conversation(state.conversation),
      turns(state.turns),
      h("details", {}, h("summary", {}, "The whole state (JSON)"),
        h("pre", { class: "state-json", "data-replay-state": "" },
          JSON.stringify(state, null, 2)))),
  ];
}

function plural(n, word) {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

function current(turn) {
  if (!turn) return h("p", { class: "muted" }, "No turn is running.");
  const open = turn.open_message;
  return h("div", { class: "replay-current" },
    h("h3", {}, `Running turn ${turn.number ?? ""}`, turn.interrupted ? " (interrupted)" : ""),
    open ? h("div", {}, h("p", { class: "muted" }, `Streaming from ${open.model}:`),
                       h("pre", { class: "open-text" }, open.text)) : null,
    turn.tool_calls.length ? h("ul", {}, ...turn.tool_calls.map((call) => h("li", {},
      h("code", {}, call.name), ` (${call.executor})`,
      call.approval ? [" ", statusBadge(call.approval)] : null,
      h("pre", {}, JSON.stringify(call.input))))) : null,
    turn.waiting_on_approvals.length
      ? h("p", {}, `Waiting on a person: ${turn.waiting_on_approvals.join(", ")}`) : null,
    turn.pending_tool_use_ids.length
      ? h("p", {}, `Waiting on the client: ${turn.pending_tool_use_ids.join(", ")}`) : null);
}

function conversation(messages) {
  return h("div", { class: "replay-conversation" },
    h("h3", {}, "What the next model call would be sent"),
    messages.length ? h("ol", { class: "timeline" }, ...messages.map((m) => h("li", {
      class: `entry entry-${m.role === "user" ? "user" : "assistant"}` },
      h("div", { class: "entry-head" }, h("strong", {}, m.role),
        m.tool_use_id ? h("code", {}, m.tool_use_id) : null,
        m.is_error ? h("span", { class: "error" }, "error") : null),
      m.text ? h("p", { class: "text" }, m.text) : null,
      ...m.tool_calls.map((call) => h("p", { class: "text" }, "calls ", h("code", {}, call.name),
                                      " ", h("code", {}, JSON.stringify(call.input)))))))
      : h("p", { class: "muted" }, "Nothing yet."));
}

function turns(list) {
  if (!list.length) return null;
  return h("div", { class: "table-wrap" }, h("table", {},
    h("caption", {}, "Turns so far"),
    h("thead", {}, h("tr", {}, ...["#", "Status", "Asked", "Model calls", "Tokens", "Cost"]
      .map((name) => h("th", { scope: "col" }, name)))),
    h("tbody", {}, ...list.map((turn) => h("tr", {},
      h("td", {}, String(turn.number)), h("td", {}, statusBadge(turn.status)),
      h("td", {}, turn.text, turn.error ? h("span", { class: "error" }, ` ${turn.error}`) : null),
      h("td", { class: "num" }, String(turn.model_calls)),
      h("td", { class: "num" }, formatTokens(turn.tokens)),
      h("td", { class: "num" }, formatCost(turn.cost_nanos)))))));
}
