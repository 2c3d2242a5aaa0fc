// #/approvals: the tool calls waiting for a human across the tenant (GET /v1/approvals
// ?status=pending), each with its session and input, approved or denied here (POST
// /v1/approvals/{id}); live from the tenant stream's approval events.

import { h, timeElement } from "../dom.js";
import { coalesced, enc, followTenant, on, reported, useStyles } from "./common.js";

const TYPES = ["approval_requested", "approval_resolved"];

export async function mount(root, ctx) {
  useStyles();
  const list = h("div", { class: "approvals", "aria-live": "polite" });
  root.append(h("h1", {}, "Approvals waiting"),
              h("p", { class: "hint" }, "Tool calls that need a person's decision, oldest first."),
              list);

  const refresh = coalesced(reported(ctx, async () => {
    const pending = [];
    for await (const approval of ctx.api.pages("/v1/approvals", { status: "pending" })) {
      pending.push(approval);
    }
    list.replaceChildren(...(pending.length ? pending.map((a) => card(ctx, a, refresh))
      : [h("p", { class: "empty" }, "Nothing is waiting for a decision.")]));
  }));
  const stream = followTenant(ctx, TYPES, () => refresh());
  refresh();
  return () => {
    refresh.stop();
    stream.close();
  };
}

function card(ctx, approval, refresh) {
  const reason = h("input", { type: "text", name: "reason", maxlength: "2000",
                              "aria-label": `Reason for ${approval.tool_name} (optional)`,
                              placeholder: "reason (optional)" });
  const buttons = [];
  const decide = (decision) => reported(ctx, async () => {
    for (const button of buttons) button.disabled = true;
    try {
      const body = { decision };
      if (reason.value.trim()) body.reason = reason.value.trim();
      await ctx.api.post(`/v1/approvals/${enc(approval.id)}`, body,
                         { idempotencyKey: `${approval.id}-${decision}` });
      ctx.notify(`${decision === "approve" ? "Approved" : "Denied"}: ${approval.tool_name}`,
                 "info");
    } finally {
      for (const button of buttons) button.disabled = false;
      refresh();
    }
  });
  const approve = on(h("button", { type: "button", class: "primary" }, "Approve"),
                     "click", decide("approve"));
  const deny = on(h("button", { type: "button" }, "Deny"), "click", decide("deny"));
  buttons.push(approve, deny);
  return h("article", { class: "approval card", "data-approval-id": approval.id },
    h("h2", {}, h("code", {}, approval.tool_name)),
    h("p", { class: "meta" },
      "Session ", h("a", { href: `#/sessions/${enc(approval.session_id)}` }, approval.session_id),
      " (", h("a", { href: `#/sessions/${enc(approval.session_id)}/replay` }, "replay"), ")",
      " · asked ", timeElement(approval.requested_at)),
    h("pre", { class: "input" }, JSON.stringify(approval.input, null, 2)),
    h("div", { class: "actions" }, reason, approve, deny));
}
