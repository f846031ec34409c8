// One incident: what happened, the police actions, its guards, every revision and command in time order, its evidence.

import * as api from "./api.js";
import { h, replace } from "./dom.js";
import { dateTime, distance, duration, label, t, time } from "./i18n.js";
import { command, isOverdue, needsAcknowledgement, on, state } from "./store.js";

const FINAL = new Set(["resolved", "false_alarm", "closed"]);

export function mount(root, id) {
  const page = h("section", { class: "page incident-page" }, h("p", { class: "muted" }, t("common.loading")));
  replace(root, page);
  let detail = null;
  let loading = false;
  let again = false;
  let result = null; // the last action's outcome, kept across re-renders

  async function load() {
    if (loading) {
      again = true;
      return;
    }
    loading = true;
    try {
      detail = await api.get(`/api/incidents/${encodeURIComponent(id)}`);
      render();
    } catch (error) {
      replace(page, h("p", { class: "error" }, error.status === 404 ? t("incident.not_found") : t("action.failed", { reason: error.message })),
        h("a", { href: "#/board" }, t("incident.back")));
    } finally {
      loading = false;
      if (again) {
        again = false;
        load();
      }
    }
  }

  function render() {
    const d = detail;
    const final = FINAL.has(d.status);
    const overdue = isOverdue(d);
    replace(page,
      h("div", { class: `incident-head sev-row-${d.severity}${overdue ? " overdue" : ""}${d.test ? " test" : ""}`, dataset: { revision: d.revision, status: d.status } },
        h("a", { href: "#/board", class: "back" }, "← ", t("incident.back")),
        h("h1", {},
          h("span", { class: `sev sev-${d.severity}` }, label("severity", d.severity)), " ",
          label("kind", d.kind), d.test ? h("span", { class: "badge test" }, t("board.test")) : null),
        h("div", { class: "head-facts" },
          h("span", { class: `status status-${d.status}` }, label("status", d.status)),
          h("span", {}, t("incident.revision", { n: d.revision })),
          h("span", { class: "age", dataset: { detected: d.detected_at } }, t("incident.age", { age: duration((Date.now() - Date.parse(d.detected_at)) / 1000) })),
          d.acknowledged_by ? h("span", { class: "acked" }, t("incident.acknowledged_by", { by: d.acknowledged_by }))
            : needsAcknowledgement(d) ? h("span", { class: "warn-text" }, t("board.not_acknowledged")) : null)),
      h("div", { class: "incident-grid" },
        h("div", { class: "column" },
          facts(d),
          state.me.can_command && !final ? actions(d) : null,
          result ? h("p", { class: `result ${result.kind}`, role: "status" }, result.text) : null,
          guardsTable(d)),
        h("div", { class: "column" }, timeline(d), evidence(d))),
    );
  }

  function facts(d) {
    const inc = d.incident || {};
    const rows = [
      ["site", state.incidents.get(d.id)?.site_name || d.site],
      ["community", d.community],
      ["zone", d.zone],
      ["device", d.device],
      ["raised_by_guard", inc.raised_by_guard],
      ["location", d.lat != null ? `${d.lat.toFixed(5)}, ${d.lon.toFixed(5)}` : null],
      ["detected_at", dateTime(d.detected_at)],
      ["guards_needed", String(d.guards_needed)],
      ["detail", inc.detail],
    ];
    return h("dl", { class: "facts" }, rows.filter(([, v]) => v != null && v !== "").map(([k, v]) => [h("dt", {}, t(`incident.${k}`)), h("dd", {}, v)]));
  }

  function actions(d) {
    const count = h("input", { type: "number", min: 1, max: 20, value: 1, class: "count-input", "aria-label": t("action.how_many") });
    const note = h("input", { type: "text", maxlength: 500, placeholder: t("action.note_placeholder"), class: "note-input", "aria-label": t("action.note") });
    const send = async (body, button) => {
      button.disabled = true;
      try {
        await command(id, body);
        result = { kind: "ok", text: t("action.sent", { command: t(`command.${body.command}`) }) };
      } catch (error) {
        result = { kind: "bad", text: t("action.failed", { reason: error.message }) };
      }
      render();
    };
    return h("div", { class: "actions" },
      h("h2", {}, t("incident.actions")),
      h("div", { class: "action-row" },
        h("button", { type: "button", class: "primary", "data-action": "acknowledge", disabled: !!d.acknowledged_by,
          onclick: (e) => send({ command: "acknowledge" }, e.currentTarget) }, t("action.acknowledge"))),
      h("div", { class: "action-row" }, count,
        h("button", { type: "button", "data-action": "more_guards", onclick: (e) => send({ command: "more_guards", count: Number(count.value) || 1 }, e.currentTarget) }, t("action.more_guards"))),
      h("div", { class: "action-row" }, note,
        h("button", { type: "button", class: "danger", "data-action": "close", onclick: (e) => send({ command: "close", ...(note.value.trim() ? { note: note.value.trim() } : {}) }, e.currentTarget) }, t("action.close"))),
    );
  }

  function guardsTable(d) {
    const latest = d.timeline.length ? d.timeline[d.timeline.length - 1].assignments : [];
    return h("div", { class: "guards-of-incident" },
      h("h2", {}, t("incident.guards")),
      latest.length ? h("table", { class: "plain" },
        h("thead", {}, h("tr", {}, ["guard", "roles", "state", "distance", "eta", "offered_at", "answered_at"].map((c) => h("th", {}, t(`incident.guard.${c}`))))),
        h("tbody", {}, latest.map((a) => h("tr", { class: `state-${a.state}` },
          h("td", {}, h("a", { href: `#/guards/${encodeURIComponent(d.site)}/${encodeURIComponent(a.guard)}` }, a.name)),
          h("td", {}, a.roles.map((r) => label("guard_role", r)).join(", ")),
          h("td", {}, h("span", { class: `pill state-${a.state}` }, label("assignment", a.state))),
          h("td", {}, distance(a.distance_m)),
          h("td", {}, duration(a.eta_s)),
          h("td", {}, time(a.offered_at)),
          h("td", {}, time(a.answered_at)))))) : h("p", { class: "muted" }, t("incident.no_guards")));
  }

  function timeline(d) {
    const entries = [];
    let before = new Map();
    let acknowledgedBy = null;
    for (const r of d.timeline) {
      const what = [];
      if (r.revision === 1) what.push(t("timeline.raised", { kind: label("kind", d.kind), device: d.device }));
      for (const a of r.assignments) {
        if (before.get(a.guard) !== a.state) what.push(t("timeline.guard", { name: a.name, state: label("assignment", a.state) }));
      }
      if (r.acknowledged_by && r.acknowledged_by !== acknowledgedBy) what.push(t("timeline.acknowledged", { by: r.acknowledged_by }));
      acknowledgedBy = r.acknowledged_by;
      before = new Map(r.assignments.map((a) => [a.guard, a.state]));
      entries.push({ at: r.issued_at, node: h("li", { class: "rev", dataset: { revision: r.revision } },
        h("time", { title: t("timeline.committed", { at: dateTime(r.committed_at) }) }, time(r.issued_at)),
        h("span", { class: "who" }, t("timeline.site")),
        h("span", { class: "what" }, h("b", {}, t("timeline.revision", { n: r.revision })), " ",
          h("span", { class: `status status-${r.status}` }, label("status", r.status)), what.length ? ` — ${what.join("; ")}` : "")) });
    }
    for (const c of d.commands) {
      const extra = c.command === "more_guards" ? ` (${c.count})` : c.note ? ` — “${c.note}”` : "";
      entries.push({ at: c.at, node: h("li", { class: "cmd" },
        h("time", {}, time(c.at)), h("span", { class: "who" }, c.by), h("span", { class: "what" }, t(`command.${c.command}`), extra)) });
    }
    entries.sort((a, b) => Date.parse(a.at) - Date.parse(b.at));
    return h("div", { class: "timeline" }, h("h2", {}, t("incident.timeline")), h("ol", {}, entries.map((e) => e.node)));
  }

  function evidence(d) {
    return h("div", { class: "evidence" }, h("h2", {}, t("incident.evidence")),
      d.evidence.length ? d.evidence.map((e) => h("figure", { class: `evidence-item ${e.kind}` },
        e.url && e.uploaded !== false ? (e.kind === "clip" ? h("video", { src: e.url, controls: true, preload: "metadata" }) : h("img", { src: e.url, alt: t("evidence.snapshot_of", { camera: e.camera }) }))
          : h("div", { class: "not-uploaded" }, t("evidence.not_uploaded")),
        h("figcaption", {}, `${label("evidence", e.kind)} · ${e.camera} · ${time(e.start)}${e.kind === "clip" ? `–${time(e.end)}` : ""}`)))
        : h("p", { class: "muted" }, t("evidence.none")));
  }

  load();
  const off = on("change", (change) => {
    if (change.key === id && change.kind !== "site" && change.kind !== "guards") load();
  });
  let ticks = 0;
  const timer = setInterval(() => {
    const age = page.querySelector(".age");
    if (age && detail) age.textContent = t("incident.age", { age: duration((Date.now() - Date.parse(detail.detected_at)) / 1000) });
    // the edge uploads evidence after the alarm, in the background: look again while some is still on its way
    if (++ticks % 5 === 0 && detail && detail.evidence.some((e) => e.uploaded === false)) load();
  }, 1000);
  return () => {
    off();
    clearInterval(timer);
  };
}
