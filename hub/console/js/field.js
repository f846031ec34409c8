// The field page: patrol tasks and their state, late and missed patrol check-ins, and the guards' tip queue (accept or
// reject). Read from the API, read again when the stream brings a change of these kinds.

import * as api from "./api.js";
import { h, replace } from "./dom.js";
import { ago, dateTime, t, time } from "./i18n.js";
import { on, state } from "./store.js";
import { toast } from "./toast.js";

const KINDS = new Set(["task", "alert", "checkin", "tip"]);

export function mount(root) {
  const tasks = h("tbody");
  const alerts = h("ul", { class: "field-alerts" });
  const tips = h("ul", { class: "tips" });
  const summary = h("div", { class: "summary" });
  replace(root, h("section", { class: "page field-page" },
    h("div", { class: "page-head" }, h("h1", {}, t("nav.field")), summary),
    h("div", { class: "field-grid" },
      h("div", { class: "panel" }, h("h2", {}, t("field.tasks")),
        h("table", { class: "board tasks" },
          h("thead", {}, h("tr", {}, ["state", "kind", "target", "guard", "window", "updated"].map((c) => h("th", {}, t(`field.col.${c}`))))),
          tasks)),
      h("div", { class: "panel" }, h("h2", {}, t("field.alerts")), alerts),
      h("div", { class: "panel" }, h("h2", {}, t("field.tips")), tips))));

  async function decide(tip, decision) {
    try {
      await api.post(`/api/tips/${encodeURIComponent(tip.id)}/decision`, { decision });
      await load();
    } catch (error) {
      toast(t("field.decision_failed", { error: error.message }));
    }
  }

  function render(taskRows, windows, queue) {
    const missed = windows.filter((w) => w.outcome !== "on_time");
    replace(summary,
      h("span", { class: "stat" }, t("field.open_tasks", { n: taskRows.filter((r) => r.state === "offered" || r.state === "accepted").length })),
      h("span", { class: missed.length ? "stat bad" : "stat ok" }, t("field.alert_count", { n: missed.length })),
      h("span", { class: queue.length ? "stat warn" : "stat" }, t("field.tip_count", { n: queue.length })));
    replace(tasks, taskRows.map((r) => h("tr", { dataset: { task: r.id, state: r.state } },
      h("td", {}, h("span", { class: `pill state-${r.state}` }, t(`task_state.${r.state}`))),
      h("td", {}, t(`task_kind.${r.kind}`)),
      h("td", {}, r.target.name || r.target.id, h("small", { class: "muted" }, ` ${r.target.kind === "point" ? t("field.point") : t("field.cell")}`)),
      h("td", {}, h("b", {}, r.guard), h("small", { class: "muted" }, ` ${r.site}`)),
      h("td", { title: `${dateTime(r.start)} – ${dateTime(r.end)}` }, `${time(r.start)}–${time(r.end)}`),
      h("td", { title: dateTime(r.updated_at) }, ago(r.updated_at)))));
    if (!taskRows.length) tasks.append(h("tr", {}, h("td", { colspan: 6, class: "muted" }, t("field.no_tasks"))));
    replace(alerts, missed.length ? missed.map((w) => h("li", { class: `alert-${w.outcome}`, dataset: { point: w.point, outcome: w.outcome } },
      h("span", { class: `pill outcome-${w.outcome}` }, t(`outcome.${w.outcome}`)), " ",
      h("b", {}, names.get(w.point) || w.point), h("span", { class: "muted" }, ` · ${w.route} · `), dateTime(w.start))) : h("li", { class: "muted" }, t("field.no_alerts")));
    replace(tips, queue.length ? queue.map((tip) => h("li", { class: "tip", dataset: { tip: tip.id } },
      tip.photo ? h("img", { src: tip.photo, alt: t("field.photo"), loading: "lazy" }) : null,
      h("div", { class: "tip-body" },
        h("div", {}, h("span", { class: "pill" }, t(`tip_category.${tip.category}`)), " ", h("b", {}, tip.guard),
          h("small", { class: "muted" }, ` ${tip.site} · ${ago(tip.received_at)}`)),
        h("p", { class: "tip-text", text: tip.text }),
        state.me && state.me.can_command ? h("div", { class: "actions" },
          h("button", { type: "button", class: "primary accept", onclick: () => decide(tip, "accept") }, t("field.accept")),
          h("button", { type: "button", class: "reject", onclick: () => decide(tip, "reject") }, t("field.reject"))) : null)))
      : h("li", { class: "muted" }, t("field.no_tips")));
  }

  let alive = true;
  const names = new Map(); // patrol point id -> name
  async function load() {
    const [taskRows, windows, queue, points] = await Promise.all([
      api.get("/api/tasks?limit=100"), api.get("/api/patrol/windows?limit=100"), api.get("/api/tips?state=new&limit=100"),
      names.size ? null : api.get("/api/patrol/points")]);
    for (const point of points || []) names.set(point.id, point.name);
    if (alive) render(taskRows, windows, queue);
  }

  let pending = null;
  const off = on("change", (change) => {
    if (!KINDS.has(change.kind) || pending) return;
    pending = setTimeout(() => { pending = null; load().catch(() => {}); }, 150); // a burst of changes: one read
  });
  load().catch((error) => toast(t("field.load_failed", { error: error.message })));
  return () => {
    alive = false;
    off();
    clearTimeout(pending);
  };
}
