// The guards board: every guard's state, site, roles, job and when they were last seen; redrawn at most once a second.

import { h, replace } from "./dom.js";
import { ago, dateTime, label, t } from "./i18n.js";
import { guardKey, on, state } from "./store.js";

const STATE_ORDER = ["on_scene", "assigned", "offered", "available", "off_duty"];

export function mount(root, site, id) {
  const focus = site && id ? guardKey(site, id) : null;
  const body = h("tbody");
  const summary = h("div", { class: "summary" });
  replace(root, h("section", { class: "page guards-page" },
    h("div", { class: "page-head" }, h("h1", {}, t("nav.guards")), summary),
    h("table", { class: "board guards" },
      h("thead", {}, h("tr", {}, ["state", "name", "site", "roles", "job", "seen"].map((c) => h("th", {}, t(`guards.col.${c}`))))),
      body)));

  function render() {
    const guards = [...state.guards.values()].sort((a, b) =>
      rank(a.state) - rank(b.state) || a.site.localeCompare(b.site) || a.name.localeCompare(b.name));
    const counts = new Map();
    for (const g of guards) counts.set(g.state, (counts.get(g.state) || 0) + 1);
    replace(summary, STATE_ORDER.filter((s) => counts.get(s)).map((s) =>
      h("span", { class: `stat state-${s}` }, `${label("guard_state", s)} ${counts.get(s)}`)));
    replace(body, guards.map((g) => {
      const key = guardKey(g.site, g.id);
      return h("tr", { class: key === focus ? "focus" : "", dataset: { guard: key, state: g.state } },
        h("td", {}, h("span", { class: `pill state-${g.state}` }, label("guard_state", g.state))),
        h("td", {}, h("b", {}, g.name), " ", h("small", { class: "muted" }, g.id)),
        h("td", {}, g.site),
        h("td", {}, g.roles.map((r) => label("guard_role", r)).join(", ")),
        h("td", {}, g.job ? h("a", { href: `#/incident/${encodeURIComponent(g.job)}` }, t("guards.open_job")) : "—"),
        h("td", { title: dateTime(g.position_at || g.updated_at) }, ago(g.position_at || g.updated_at)));
    }));
    if (focus && !scrolled) {
      const row = body.querySelector("tr.focus");
      if (row) {
        row.scrollIntoView({ block: "center" });
        scrolled = true;
      }
    }
  }

  let scrolled = false;
  let timer = 0;
  let last = 0;
  function soon() {
    if (timer) return;
    timer = setTimeout(() => {
      timer = 0;
      last = Date.now();
      render();
    }, Math.max(0, 1000 - (Date.now() - last)));
  }

  render();
  last = Date.now();
  const off = on("guards", soon);
  const tick = setInterval(soon, 5000); // "last seen" keeps ageing
  return () => {
    off();
    clearTimeout(timer);
    clearInterval(tick);
  };
}

function rank(s) {
  const i = STATE_ORDER.indexOf(s);
  return i < 0 ? STATE_ORDER.length : i;
}
