// The live board: open incidents, most urgent first; rows change in place as the stream brings revisions.

import { h, replace } from "./dom.js";
import { duration, label, t, time } from "./i18n.js";
import { activeAssignments, assignmentLine } from "./guardlist.js";
import { boardOrder, command, detectedMs, isOverdue, needsAcknowledgement, on, state } from "./store.js";
import { toast } from "./toast.js";

export function mount(root) {
  const body = h("tbody");
  const empty = h("p", { class: "empty" }, t("board.empty"));
  const summary = h("div", { class: "summary" });
  const table = h("table", { class: "board incidents" },
    h("thead", {}, h("tr", {},
      ["severity", "kind", "site", "zone", "device", "status", "guards", "acknowledged", "age"].map((c) => h("th", { class: `col-${c}` }, t(`board.col.${c}`))))),
    body);
  replace(root, h("section", { class: "page board-page" }, h("div", { class: "page-head" }, h("h1", {}, t("nav.board")), summary), table, empty));
  const rows = new Map(); // id -> tr
  // Ages tick only in rows on screen: a board of hundreds of incidents would otherwise be laid out again every second.
  const onScreen = new Set();
  const watcher = new IntersectionObserver((entries) => {
    const now = Date.now();
    for (const entry of entries) {
      if (entry.isIntersecting) {
        onScreen.add(entry.target);
        tickRow(entry.target, now);
      } else onScreen.delete(entry.target);
    }
  });

  function renderSummary() {
    const all = [...state.incidents.values()];
    const waiting = all.filter(needsAcknowledgement).length;
    const overdue = all.filter((r) => isOverdue(r)).length;
    replace(summary,
      h("span", { class: "stat" }, t("board.open", { n: all.length })),
      h("span", { class: waiting ? "stat warn" : "stat" }, t("board.waiting", { n: waiting })),
      overdue ? h("span", { class: "stat bad" }, t("board.overdue", { n: overdue })) : null);
  }

  function rowFor(incident) {
    const tr = rows.get(incident.id) || h("tr", { dataset: { id: incident.id }, onclick: (e) => {
      if (!e.target.closest("button")) location.hash = `#/incident/${encodeURIComponent(incident.id)}`;
    } });
    if (!rows.has(incident.id)) watcher.observe(tr);
    rows.set(incident.id, tr);
    fill(tr, incident);
    return tr;
  }

  function fill(tr, r) {
    tr.className = classes(r);
    tr.dataset.severity = r.severity;
    tr.dataset.revision = r.revision;
    tr.dataset.status = r.status;
    tr.dataset.provisional = r.provisional ? "true" : "false";
    const guards = activeAssignments(r.assignments);
    replace(tr,
      h("td", { class: "col-severity" }, h("span", { class: `sev sev-${r.severity}` }, label("severity", r.severity))),
      h("td", { class: "col-kind" }, h("b", {}, label("kind", r.kind)), r.test ? h("span", { class: "badge test" }, t("board.test")) : null),
      h("td", { class: "col-site" }, h("div", {}, r.site_name || r.site), r.community ? h("small", {}, r.community) : null),
      h("td", { class: "col-zone" }, r.provisional ? "…" : r.zone || "—"),
      h("td", { class: "col-device" }, r.provisional ? "…" : r.device),
      h("td", { class: "col-status" }, h("span", { class: `status status-${r.status}` }, label("status", r.status))),
      h("td", { class: "col-guards" }, guards.length ? guards.map(assignmentLine)
        : r.guards_needed && r.status === "dispatched" ? h("span", { class: "muted" }, t("board.no_guards_yet", { n: r.guards_needed })) : h("span", { class: "muted" }, "—")),
      h("td", { class: "col-acknowledged" }, r.acknowledged_by ? h("span", { class: "acked" }, "✓ ", r.acknowledged_by)
        : state.me.can_command && !r.test ? h("button", { type: "button", class: "ack", onclick: () => acknowledge(r.id) }, t("action.acknowledge"))
        : h("span", { class: "muted" }, needsAcknowledgement(r) ? t("board.not_acknowledged") : "—")),
      h("td", { class: "col-age age", title: time(r.detected_at) }, duration((Date.now() - detectedMs(r)) / 1000)),
    );
  }

  function classes(r) {
    const names = [`sev-row-${r.severity}`];
    if (r.test) names.push("test");
    if (r.severity === "critical" && needsAcknowledgement(r)) names.push("alarm");
    if (isOverdue(r)) names.push("overdue");
    return names.join(" ");
  }

  async function acknowledge(id) {
    try {
      await command(id, { command: "acknowledge" });
      toast(t("action.sent", { command: t("command.acknowledge") }), "ok");
    } catch (error) {
      toast(t("action.failed", { reason: error.message }), "bad");
    }
  }

  function drop(id) {
    const tr = rows.get(id);
    watcher.unobserve(tr);
    onScreen.delete(tr);
    tr.remove();
    rows.delete(id);
  }

  function render(changed) {
    const ids = changed ? changed : [...state.incidents.keys()];
    for (const id of ids) {
      const incident = state.incidents.get(id);
      if (incident) rowFor(incident);
      else if (rows.has(id)) drop(id);
    }
    if (!changed) for (const id of [...rows.keys()]) if (!state.incidents.has(id)) drop(id);
    const next = boardOrder(state.incidents.values()).map((r) => r.id);
    // Move only rows out of place: a new incident is one insertion, not the whole table laid out again.
    let at = body.firstElementChild;
    for (const id of next) {
      const tr = rows.get(id);
      if (tr === at) at = at.nextElementSibling;
      else body.insertBefore(tr, at);
    }
    empty.hidden = next.length > 0;
    table.hidden = next.length === 0;
    renderSummary();
  }

  function tickRow(tr, now) {
    const r = state.incidents.get(tr.dataset.id);
    if (r) tr.lastElementChild.firstChild.nodeValue = duration((now - detectedMs(r)) / 1000);
  }

  function tick() {
    const now = Date.now();
    for (const tr of onScreen) tickRow(tr, now);
    let turned = false;
    for (const [id, tr] of rows) {
      const r = state.incidents.get(id);
      const overdue = !!r && isOverdue(r, now);
      if (overdue !== tr.classList.contains("overdue")) {
        tr.classList.toggle("overdue", overdue);
        turned = true;
      }
    }
    if (turned) renderSummary();
  }

  render(null);
  const off = on("incidents", render);
  const timer = setInterval(tick, 1000);
  return () => {
    off();
    clearInterval(timer);
    watcher.disconnect();
  };
}
