// #/board: the boards; #/board/<board_id>: one board's tasks in a column per status (GET
// /v1/boards/{id}/snapshot), a blocked task marked with the tasks it waits for, a task moved
// with its "Move to" control (or dragged to a column), added, opened for its comments. Live
// from the tenant stream's task events, read after the snapshot's position, each change
// re-read from a snapshot that has applied it (`min_position`).

import { newIdempotencyKey } from "../api.js";
import { h, statusBadge, timeElement } from "../dom.js";
import { coalesced, enc, fill, followTenant, on, reported, useStyles } from "./common.js";

const COLUMNS = [["inbox", "Inbox"], ["in_progress", "In progress"], ["review", "Review"],
                 ["blocked", "Blocked"], ["done", "Done"]];
const LABEL = Object.fromEntries(COLUMNS);
const TASK_EVENTS = ["task_created", "task_updated", "task_deleted", "task_commented"];

export async function mount(root, ctx) {
  useStyles();
  const boardId = ctx.params.board_id;
  if (!boardId) return boardList(root, ctx);
  return boardPage(root, ctx, boardId);
}

// --- the boards --------------------------------------------------------------------------------

async function boardList(root, ctx) {
  const boards = [];
  for await (const board of ctx.api.pages("/v1/boards", {})) boards.push(board);
  const name = h("input", { type: "text", name: "name", id: "board-name", required: true,
                            maxlength: "200" });
  const form = h("form", { class: "row add-form", onsubmit: reported(ctx, async (event) => {
    event.preventDefault();
    if (!name.value.trim()) return;
    const board = await ctx.api.post("/v1/boards", { name: name.value.trim() },
                                     { idempotencyKey: newIdempotencyKey() });
    ctx.navigate(`#/board/${enc(board.id)}`);
  }) }, h("label", { for: "board-name" }, "New board"), name,
  h("button", { type: "submit" }, "Create"));
  root.append(h("h1", {}, "Boards"),
    boards.length
      ? h("ul", { class: "boards" }, ...boards.map((board) => h("li", {},
        h("a", { href: `#/board/${enc(board.id)}` }, board.name),
        board.description ? h("span", { class: "muted" }, ` ${board.description}`) : null)))
      : h("p", { class: "empty" }, "No boards yet."),
    form);
  return () => {};
}

// --- one board ---------------------------------------------------------------------------------

async function boardPage(root, ctx, boardId) {
  const state = { snapshot: null, open: null, draft: null, position: 0, titles: new Map() };
  const columns = h("div", { class: "columns" });
  const detail = h("aside", { class: "task-detail", "aria-label": "The open task" });
  detail.hidden = true;
  const heading = h("h1", {}, "Board");
  const description = h("p", { class: "muted" });
  root.append(heading, description, addForm(ctx, boardId), columns, detail);

  const actions = {
    open: reported(ctx, async (task) => {
      state.open = task.id;
      await renderDetail(ctx, state, detail);
      detail.querySelector("h2")?.focus();
    }),
    moved: () => refresh(),
  };
  const render = async (snapshot) => {
    state.snapshot = snapshot;
    await learnTitles(ctx, state);
    heading.textContent = snapshot.board.name;
    description.textContent = snapshot.board.description || "";
    columns.replaceChildren(...COLUMNS.map(([status]) => column(ctx, state, status, actions)));
  };
  const refresh = coalesced(reported(ctx, async () => {
    await render(await ctx.api.get(`/v1/boards/${enc(boardId)}/snapshot`,
                                   { min_position: state.position }));
  }));
  const refreshDetail = coalesced(reported(ctx, async () => {
    if (state.open) await renderDetail(ctx, state, detail);
  }));

  // The first snapshot, then the task events after its position: none missed, none twice.
  const first = await ctx.api.get(`/v1/boards/${enc(boardId)}/snapshot`);
  state.position = first.position;
  await render(first);
  const stream = followTenant(ctx, TASK_EVENTS, (envelope) => {
    state.position = Math.max(state.position, envelope.position);
    refresh();
    if (envelope.stream_id === state.open) refreshDetail();
  }, { streamType: "task", after: first.position });
  return () => {
    refresh.stop();
    refreshDetail.stop();
    stream.close();
  };
}

// Titles of the tasks blocking this board's tasks (a dependency may be on another board).
async function learnTitles(ctx, state) {
  for (const tasks of Object.values(state.snapshot.tasks)) {
    for (const task of tasks) state.titles.set(task.id, task.title);
  }
  const unknown = new Set(state.snapshot.blocked.flatMap((b) => b.blocked_by)
    .filter((id) => !state.titles.has(id)));
  await Promise.all([...unknown].map(async (id) => {
    try {
      state.titles.set(id, (await ctx.api.get(`/v1/tasks/${enc(id)}`)).title);
    } catch {
      state.titles.set(id, id);  // deleted meanwhile: its id will do
    }
  }));
}

function addForm(ctx, boardId) {
  const title = h("input", { type: "text", name: "title", id: "task-title", required: true,
                             maxlength: "500" });
  return h("form", { class: "row add-form", onsubmit: reported(ctx, async (event) => {
    event.preventDefault();
    if (!title.value.trim()) return;
    await ctx.api.post("/v1/tasks", { board_id: boardId, title: title.value.trim() },
                       { idempotencyKey: newIdempotencyKey() });
    title.value = "";
  }) }, h("label", { for: "task-title" }, "New task"), title,
  h("button", { type: "submit" }, "Add"));
}

function column(ctx, state, status, actions) {
  const tasks = state.snapshot.tasks[status] || [];
  const total = state.snapshot.counts[status] ?? tasks.length;
  const id = `column-${status}`;
  const list = h("ul", { class: "cards" }, ...tasks.map((task) => card(ctx, state, task, actions)));
  const section = h("section", { class: "column", "data-status": status, "aria-labelledby": id },
    h("h2", { id }, `${LABEL[status]} `, h("span", { class: "count" }, `(${total})`)),
    tasks.length ? list : h("p", { class: "empty muted" }, "No tasks"),
    total > tasks.length ? h("p", { class: "muted" }, `and ${total - tasks.length} more`) : null);
  // Dragging is a shortcut for the Move control, which the keyboard uses.
  on(section, "dragover", (event) => {
    event.preventDefault();
    section.classList.add("drop");
  });
  on(section, "dragleave", () => section.classList.remove("drop"));
  on(section, "drop", (event) => {
    event.preventDefault();
    section.classList.remove("drop");
    const taskId = event.dataTransfer.getData("text/plain");
    if (taskId) move(ctx, taskId, status).then(actions.moved);
  });
  return section;
}

function card(ctx, state, task, actions) {
  const blocked = state.snapshot.blocked.find((b) => b.task_id === task.id);
  const select = h("select", { name: "status", "aria-label": `Move "${task.title}" to` },
    ...COLUMNS.filter(([value]) => value !== task.status)
      .map(([value, label]) => h("option", { value }, label)));
  const moveButton = h("button", { type: "button", onclick: () => move(ctx, task.id, select.value)
    .then(actions.moved) }, "Move");
  const item = h("li", { class: "card task", draggable: "true", "data-task-id": task.id,
                         "data-status": task.status },
    h("h3", {}, h("button", { type: "button", class: "link", onclick: () => actions.open(task),
                              "aria-label": `Open "${task.title}"` }, task.title)),
    h("p", { class: "meta" }, statusBadge(task.priority), " ",
      task.due_at ? h("span", {}, "due ", timeElement(task.due_at)) : null),
    blocked ? blockedBy(state, blocked) : null,
    h("div", { class: "row move" }, select,
      moveButton));
  on(item, "dragstart", (event) => {
    event.dataTransfer.setData("text/plain", task.id);
    event.dataTransfer.effectAllowed = "move";
  });
  return item;
}

function blockedBy(state, blocked) {
  if (!blocked.blocked_by.length) {
    return h("p", { class: "blocked-by" }, "Blocked by hand: move it to go on.");
  }
  return h("p", { class: "blocked-by" }, "Blocked by ",
    ...blocked.blocked_by.flatMap((id, index) => [index ? ", " : "",
      h("span", { class: "blocker", "data-task-id": id }, state.titles.get(id) || id)]),
    blocked.resume_status ? ` (then back to ${LABEL[blocked.resume_status]})` : "");
}

// A task to `status` (PATCH): a refusal (done while a dependency is not) is shown.
async function move(ctx, taskId, status) {
  try {
    await ctx.api.patch(`/v1/tasks/${enc(taskId)}`, { status });
  } catch (error) {
    ctx.notify(`The task was not moved: ${error.message}`, "error");
  }
}

// --- the open task -----------------------------------------------------------------------------

// The open task's facts and comments; its comment form is kept across re-reads (live
// updates), so what is being typed stays, focus too.
async function renderDetail(ctx, state, detail) {
  const taskId = state.open;
  const [task, comments] = await Promise.all([
    ctx.api.get(`/v1/tasks/${enc(taskId)}`),
    (async () => {
      const all = [];
      for await (const comment of ctx.api.pages(`/v1/tasks/${enc(taskId)}/comments`, {})) {
        all.push(comment);
      }
      return all;
    })(),
  ]);
  if (state.open !== taskId) return;
  if (detail.dataset.taskId !== taskId) skeleton(ctx, state, detail, taskId);
  detail.querySelector("h2").textContent = task.title;
  fill(detail.querySelector(".task-facts"),
    h("p", {}, statusBadge(task.status), " ", statusBadge(task.priority), " ",
      h("code", { class: "muted" }, task.id)),
    task.description ? h("p", { class: "description" }, task.description) : null,
    task.dependencies.length
      ? h("p", {}, "Waits for: ", task.dependencies.map((id, i) =>
        [i ? ", " : "", state.titles.get(id) || id]))
      : null);
  fill(detail.querySelector(".comments"),
    h("h3", {}, `Comments (${comments.length})`),
    comments.length
      ? h("ul", {}, ...comments.map((comment) => h("li", { "data-comment-id": comment.id },
        h("p", { class: "body" }, comment.body),
        h("p", { class: "meta" }, comment.author || "someone", " · ",
          timeElement(comment.created_at)))))
      : h("p", { class: "muted" }, "No comments yet."));
  detail.hidden = false;
}

function skeleton(ctx, state, detail, taskId) {
  const body = h("textarea", { name: "body", id: "comment-body", required: true });
  const form = h("form", { class: "comment-form", onsubmit: reported(ctx, async (event) => {
    event.preventDefault();
    if (!body.value.trim()) return;
    await ctx.api.post(`/v1/tasks/${enc(taskId)}/comments`, { body: body.value.trim() },
                       { idempotencyKey: newIdempotencyKey() });
    body.value = "";
    await renderDetail(ctx, state, detail);
  }) }, h("label", { for: "comment-body" }, "Comment"), body,
  h("button", { type: "submit" }, "Add comment"));
  const close = h("button", { type: "button", onclick: () => {
    state.open = null;
    detail.hidden = true;
    delete detail.dataset.taskId;
    detail.replaceChildren();
  } }, "Close");
  detail.dataset.taskId = taskId;
  detail.replaceChildren(h("div", { class: "row detail-head" }, h("h2", { tabindex: "-1" }), close),
                         h("div", { class: "task-facts" }), h("div", { class: "comments" }), form);
}
