// A session, live: its timeline is the fold of its events (from seq 1, then live, through
// /static/spool.js), so a reconnect resumes after the last seq and nothing shows twice. Beside
// it the box for the next message (enqueue or interrupt while a turn runs), Interrupt, and the
// queue. Every action is one call of the public API; what it changes comes back as events.

import { ApiError, newIdempotencyKey } from "../api.js";
import { h, formatCost, formatTokens, statusBadge, timeElement } from "../dom.js";

export async function mount(root, ctx) {
  const id = ctx.params.id;
  const path = `/v1/sessions/${encodeURIComponent(id)}`;
  const session = await ctx.api.get(path);  // 404 here: the shell shows the error
  const agentName = session.agent_id ? await nameOf(ctx, session.agent_id) : null;
  const page = new SessionPage(root, ctx, session, agentName);
  const stream = ctx.sessionStream(id, {
    onEvent: (envelope) => page.apply(envelope),
    onOpen: () => page.connection(),
    onGap: () => {
      ctx.notify("Some events of this session were missed: reading it again.", "info");
      ctx.navigate(location.hash);
    },
  });
  page.stream = stream;
  const ticker = setInterval(() => page.connection(), 1000);
  return () => {
    clearInterval(ticker);
    stream.close();
  };
}

async function nameOf(ctx, agentId) {
  try {
    return (await ctx.api.get(`/v1/agents/${encodeURIComponent(agentId)}`)).name;
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) return agentId;
    throw error;
  }
}

function textOf(content) {
  return (content || []).map((block) => block.text || "").join("");
}

function usageLine(spend) {
  const u = spend.usage || {};
  const parts = [`${formatTokens(u.input_tokens)} in`, `${formatTokens(u.output_tokens)} out`];
  if (u.cache_read_tokens) parts.push(`${formatTokens(u.cache_read_tokens)} cache read`);
  if (u.cache_write_tokens) parts.push(`${formatTokens(u.cache_write_tokens)} cache write`);
  let line = `${parts.join(" · ")} tokens · ${formatCost(spend.cost_nanos)}`;
  if (spend.estimated) line += " (estimated: the call was cut short)";
  if (spend.priced === false) line += " (no price for this model)";
  return line;
}

class SessionPage {
  constructor(root, ctx, session, agentName) {
    this.ctx = ctx;
    this.id = session.id;
    this.hasAgent = Boolean(session.agent_id);
    this.stream = null;
    this.lastSeq = 0;
    // the fold
    this.current = null;  // the running turn's id
    this.queue = new Map();  // turn id -> text, oldest first
    this.turns = new Set();  // turns started
    this.texts = new Map();  // turn id -> the message it answers
    this.tokens = 0;
    this.cost = 0;
    this.archived = false;
    this.messages = new Map();  // message id -> {entry, text, badges, usage}
    this.tools = new Map();  // tool use id -> {entry, summary, result, executor, done}
    this.approvals = new Map();  // approval id -> {entry, actions, turnId, pending}
    this.waiting = new Set();  // approval ids and client tool use ids the turn waits on
    this.build(root, session, agentName);
    this.chrome();
  }

  build(root, session, agentName) {
    this.status = h("span");
    this.turnsText = h("span", {}, "0");
    this.tokensText = h("span", {}, "0");
    this.costText = h("span", {}, formatCost(0));
    this.connectionText = h("span", { class: "connection muted", role: "status" }, "Connecting…");
    this.timeline = h("ol", { class: "timeline", "aria-label": "Timeline" });
    this.announce = h("p", { class: "sr-only", "aria-live": "polite" });
    this.input = h("textarea", { id: "message", name: "message", rows: 3,
                                 "aria-describedby": "message-help" });
    this.modes = h("fieldset", { class: "modes" },
      h("legend", {}, "A turn is running: the new message should"),
      h("label", {}, h("input", { type: "radio", name: "mode", value: "enqueue", checked: true }),
        " wait in the queue"),
      h("label", {}, h("input", { type: "radio", name: "mode", value: "interrupt" }),
        " interrupt it"));
    this.send = h("button", { type: "submit", class: "primary" }, "Send");
    this.interrupt = h("button", { type: "button", class: "danger",
                                   onclick: () => this.interruptTurn() }, "Interrupt");
    this.composerNote = h("p", { class: "help", id: "message-help" },
                          "Ctrl+Enter sends. Enter starts a new line.");
    this.form = h("form", { class: "composer", "aria-label": "Send a message",
                            onsubmit: (event) => { event.preventDefault(); this.submit(); } },
      h("label", { for: "message" }, "Message"), this.input, this.composerNote, this.modes,
      h("div", { class: "row" }, this.send, this.interrupt));
    this.input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        this.form.requestSubmit();
      }
    });
    this.queueList = h("ul", { class: "queue", "aria-label": "Queued turns" });
    this.queueEmpty = h("p", { class: "muted" }, "Nothing queued.");
    this.title = h("h1", {}, session.title || session.id);

    root.append(
      h("div", { class: "session-head" }, this.title, this.connectionText),
      h("ul", { class: "facts" },
        h("li", {}, "Status: ", this.status),
        h("li", {}, "Agent: ", agentName || "none"),
        h("li", {}, "Turns: ", this.turnsText),
        h("li", {}, "Tokens: ", this.tokensText),
        h("li", {}, "Cost: ", this.costText),
        session.title ? h("li", { class: "mono" }, session.id) : null,
        h("li", {}, h("a", { href: `#/sessions/${encodeURIComponent(session.id)}/replay` },
                      "Replay"))),
      h("div", { class: "session-layout" },
        h("section", { "aria-labelledby": "timeline-heading" },
          h("h2", { id: "timeline-heading" }, "Timeline"), this.timeline, this.announce,
          this.form),
        h("aside", { class: "side", "aria-labelledby": "queue-heading" },
          h("h2", { id: "queue-heading" }, "Queue"), this.queueList, this.queueEmpty)));
  }

  // --- the fold: one event at a time, in seq order ---------------------------------------------

  apply(envelope) {
    if (envelope.seq <= this.lastSeq) return;  // spool.js drops these already; kept cheap
    this.lastSeq = envelope.seq;
    const handler = this[`on_${envelope.type}`];
    if (handler) handler.call(this, envelope.data, envelope);
    if (envelope.type !== "message_delta") this.chrome();
  }

  on_session_created(data) {
    if (data.title) this.title.textContent = data.title;
  }

  on_user_message(data, envelope) {
    this.texts.set(data.turn_id, textOf(data.content));
    this.add("user", [h("strong", {}, "You"), timeElement(envelope.created_at)],
             h("p", { class: "text" }, textOf(data.content)), { "data-turn-id": data.turn_id });
    if (this.hasAgent && !this.turns.has(data.turn_id)) {
      this.queue.set(data.turn_id, textOf(data.content));
    }
  }

  on_turn_started(data) {
    this.current = data.turn_id;
    this.queue.delete(data.turn_id);
    this.turns.add(data.turn_id);
  }

  on_message_start(data, envelope) {
    const text = document.createTextNode("");
    const badges = h("span");
    const usage = h("p", { class: "usage" });
    usage.hidden = true;
    const entry = this.add("assistant",
      [h("strong", {}, "Assistant"), h("span", { class: "mono" }, data.model), badges,
       timeElement(envelope.created_at)],
      [h("p", { class: "text" }, text), usage],
      { "data-message-id": data.message_id });
    entry.classList.add("streaming");
    this.messages.set(data.message_id, { entry, text, badges, usage });
  }

  on_message_delta(data) {
    const message = this.messages.get(data.message_id);
    if (message) message.text.appendData(data.text);
  }

  on_message_stop(data) {
    const message = this.messages.get(data.message_id);
    if (!message) return;
    message.entry.classList.remove("streaming");
    message.entry.dataset.stopReason = data.stop_reason;
    if (data.stop_reason === "interrupted") {
      message.entry.classList.add("entry-interrupted");
      message.badges.append(statusBadge("interrupted"));
      this.announce.textContent = "The reply was interrupted.";
    } else if (data.stop_reason === "error" || data.stop_reason === "max_tokens") {
      message.badges.append(statusBadge(data.stop_reason));
    } else {
      this.announce.textContent = "The reply is complete.";
    }
  }

  on_spend_recorded(data) {
    this.tokens += data.tokens || 0;
    this.cost += data.cost_nanos || 0;
    const message = this.messages.get(data.message_id);
    if (message) {
      message.usage.textContent = usageLine(data);
      message.usage.hidden = false;
    }
  }

  on_tool_use(data) {
    const summary = h("summary", {}, `Tool call: ${data.name}`);
    const state = h("span", { class: "muted" }, " (waiting for its result)");
    summary.append(state);
    const result = h("div");
    // folded, but open when it waits for an answer from here
    const details = h("details", { open: data.executor === "client" }, summary,
      h("p", { class: "help" }, `Run by the ${data.executor}; id ${data.tool_use_id}`),
      h("pre", { class: "input" }, JSON.stringify(data.input, null, 2)), result);
    const entry = this.add("tool", [], details, { "data-tool-use-id": data.tool_use_id });
    this.tools.set(data.tool_use_id, { entry, state, result, executor: data.executor });
    if (data.executor === "client") {
      this.waiting.add(data.tool_use_id);
      result.append(this.answerForm(data.tool_use_id));
    }
  }

  // A client tool's result, typed by a person (what POST ./tool_results takes from a program).
  answerForm(toolUseId) {
    const field = `answer-${toolUseId}`;
    const text = h("textarea", { id: field, rows: 2 });
    const failed = h("input", { type: "checkbox" });
    return h("form", { class: "composer", "aria-label": `Answer ${toolUseId}`,
                       onsubmit: async (event) => {
      event.preventDefault();
      const button = event.currentTarget.querySelector("button");
      button.disabled = true;
      const done = await this.act("Sending the result", () => this.ctx.api.post(
        `/v1/sessions/${encodeURIComponent(this.id)}/tool_results`,
        { results: [{ tool_use_id: toolUseId, content: text.value, is_error: failed.checked }] },
        { idempotencyKey: newIdempotencyKey() }));
      if (done === undefined) button.disabled = false;
    } },
    h("label", { for: field }, "Result (this tool runs on the client: answer it here)"), text,
    h("label", {}, failed, " It failed"),
    h("div", { class: "row" }, h("button", { type: "submit" }, "Send result")));
  }

  on_tool_result(data) {
    const tool = this.tools.get(data.tool_use_id);
    this.waiting.delete(data.tool_use_id);
    if (!tool) return;
    tool.state.textContent = data.is_error ? " (error)" : " (done)";
    tool.result.replaceChildren(h("p", { class: "help" }, data.is_error ? "Error" : "Result"),
                                h("pre", {}, textOf(data.content)));
    tool.entry.dataset.done = "true";
  }

  on_approval_requested(data) {
    const approve = h("button", { type: "button", class: "primary",
                                  onclick: () => this.decide(data.approval_id, "approve") },
                      "Approve");
    const deny = h("button", { type: "button", class: "danger",
                               onclick: () => this.decide(data.approval_id, "deny") }, "Deny");
    const actions = h("div", { class: "row" }, approve, deny);
    const entry = this.add("approval",
      [h("strong", {}, "Approval needed"), statusBadge("pending")],
      [h("p", {}, `The agent wants to call ${data.name} with:`),
       h("pre", {}, JSON.stringify(data.input, null, 2)), actions],
      { "data-approval-id": data.approval_id });
    this.approvals.set(data.approval_id, { entry, actions, turnId: data.turn_id });
    this.waiting.add(data.approval_id);
  }

  on_approval_resolved(data) {
    this.waiting.delete(data.approval_id);
    const approval = this.approvals.get(data.approval_id);
    if (!approval) return;
    const word = data.decision === "approve" ? "approved" : "denied";
    const focused = approval.actions.contains(document.activeElement);  // its button goes
    approval.actions.replaceChildren(...(data.reason ? [h("p", { class: "muted" },
      `${word[0].toUpperCase()}${word.slice(1)}: ${data.reason}`)] : []));
    approval.entry.querySelector(".entry-head strong").textContent = "Approval";
    approval.entry.querySelector(".badge-pending")?.replaceWith(statusBadge(word));
    approval.entry.dataset.decision = data.decision;
    if (focused) {
      approval.entry.tabIndex = -1;
      approval.entry.focus();
    }
  }

  on_session_interrupted(data, envelope) {
    const queued = this.queue.has(data.turn_id);
    this.queue.delete(data.turn_id);
    const what = queued ? "A queued message was removed" : "The turn was interrupted";
    const said = !queued && data.reason && data.reason !== "interrupted";  // why, if not a click
    const why = said ? `: ${data.reason}` : "";
    this.add("interrupt", [h("strong", {}, what + why), timeElement(envelope.created_at)],
             h("p", { class: "muted" }, this.quoted(data.turn_id)),
             { "data-turn-id": data.turn_id });
  }

  on_session_done(data) {
    this.queue.delete(data.turn_id);
    if (this.current === data.turn_id) this.current = null;
    for (const approval of this.approvals.values()) {  // what the turn waited on is moot
      if (approval.turnId === data.turn_id && approval.entry.dataset.decision === undefined) {
        approval.actions.replaceChildren(h("p", { class: "muted" }, "The turn ended first."));
      }
    }
    if (this.current === null) this.waiting.clear();
    this.add("done", [h("strong", {}, "Turn "), statusBadge(data.status),
                      h("span", {}, this.quoted(data.turn_id))],
             data.error ? h("p", {}, data.error) : [], { "data-turn-id": data.turn_id });
  }

  // The message a turn answers, as a short quote (the timeline says which turn ended).
  quoted(turnId) {
    const text = this.texts.get(turnId) || "";
    return text ? `“${text.length > 60 ? `${text.slice(0, 60)}…` : text}”` : "";
  }

  on_session_archived() {
    this.archived = true;
  }

  // An entry of the timeline: a head line, a body, data attributes (what tests look for).
  add(kind, head, body, attrs = {}) {
    const follow = this.atBottom();
    const entry = h("li", { class: `entry entry-${kind}`, "data-kind": kind, ...attrs },
                    head.length ? h("div", { class: "entry-head" }, head) : null, body);
    this.timeline.append(entry);
    if (follow) entry.scrollIntoView({ block: "nearest" });
    return entry;
  }

  atBottom() {
    return window.innerHeight + window.scrollY >= document.documentElement.scrollHeight - 120;
  }

  // --- what the fold shows around the timeline ------------------------------------------------

  get busy() {
    return this.current !== null || this.queue.size > 0;
  }

  statusWord() {
    if (this.archived) return "archived";
    if (this.current !== null && this.waiting.size > 0) return "requires_action";
    return this.busy ? "running" : "idle";
  }

  chrome() {
    this.status.replaceChildren(statusBadge(this.statusWord()));
    this.turnsText.textContent = String(this.turns.size);
    this.tokensText.textContent = formatTokens(this.tokens);
    this.costText.textContent = formatCost(this.cost);
    this.modes.hidden = !this.busy;
    this.interrupt.disabled = this.current === null;
    this.input.disabled = this.archived;
    this.send.disabled = this.archived || this.sending;
    if (this.archived) {
      this.composerNote.textContent = "This session is archived: it takes no more messages.";
    }
    this.showQueue();
  }

  showQueue() {
    const shown = [...this.queue.keys()].join(" ");
    if (shown === this.shownQueue) return;  // unchanged: keep the buttons (and the focus)
    this.shownQueue = shown;
    const items = [...this.queue].map(([turnId, text]) => h("li", { "data-turn-id": turnId },
      h("span", {}, text),
      h("button", { type: "button", "aria-label": `Remove from the queue: ${text.slice(0, 60)}`,
                    onclick: (event) => this.removeQueued(turnId, event.currentTarget) },
        "Remove")));
    const focused = this.queueList.contains(document.activeElement);
    this.queueList.replaceChildren(...items);
    this.queueEmpty.hidden = items.length > 0;
    if (focused) (this.queueList.querySelector("button") || this.input).focus();
  }

  connection() {
    const stream = this.stream;
    const live = stream !== null && stream.connected;
    const text = stream && stream.closed ? (this.archived ? "Ended (archived)" : "Stopped")
      : live ? "Live" : "Reconnecting…";
    if (this.connectionText.textContent !== text) this.connectionText.textContent = text;
  }

  // --- actions ----------------------------------------------------------------------------------

  async act(what, call) {
    try {
      return await call();
    } catch (error) {
      const id = error.requestId ? ` (request ${error.requestId})` : "";
      this.ctx.notify(`${what} failed: ${error.message}${id}`);
      return undefined;
    }
  }

  async submit() {
    const text = this.input.value;
    if (!text.trim() || this.sending) return;
    // The same text sent again after a failure is the same action: the server answers a
    // retry with its first message rather than appending a second.
    if (this.pendingText !== text) {
      this.pendingText = text;
      this.pendingKey = newIdempotencyKey();
    }
    const mode = this.busy
      ? this.form.querySelector("input[name=mode]:checked").value : "enqueue";
    this.sending = true;
    this.chrome();
    const sent = await this.act("Sending", () => this.ctx.api.post(
      `/v1/sessions/${encodeURIComponent(this.id)}/messages`, { content: text },
      { idempotencyKey: this.pendingKey, query: { mode } }));
    this.sending = false;
    if (sent !== undefined) {
      this.input.value = "";
      this.pendingText = null;
    }
    this.chrome();
    this.input.focus();
  }

  async interruptTurn() {
    await this.act("Interrupting", () => this.ctx.api.post(
      `/v1/sessions/${encodeURIComponent(this.id)}/interrupt`));
  }

  async removeQueued(turnId, button) {
    button.disabled = true;
    const done = await this.act("Removing from the queue", () => this.ctx.api.del(
      `/v1/sessions/${encodeURIComponent(this.id)}/queue/${encodeURIComponent(turnId)}`));
    if (done === undefined) button.disabled = false;
  }

  async decide(approvalId, decision) {
    const approval = this.approvals.get(approvalId);
    const buttons = approval.actions.querySelectorAll("button");
    buttons.forEach((button) => { button.disabled = true; });
    const done = await this.act(decision === "approve" ? "Approving" : "Denying",
      () => this.ctx.api.post(`/v1/approvals/${encodeURIComponent(approvalId)}`, { decision },
                              { idempotencyKey: `${approvalId}-${decision}` }));
    if (done === undefined) buttons.forEach((button) => { button.disabled = false; });
  }
}
