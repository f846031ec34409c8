// The sites board: offline sites on top, then the rest; liveness, backlog and revisions the hub has not receipted.

import { h, replace } from "./dom.js";
import { ago, dateTime, t, time } from "./i18n.js";
import { on, refreshSites, state } from "./store.js";

export function mount(root) {
  const body = h("tbody");
  const summary = h("div", { class: "summary" });
  replace(root, h("section", { class: "page sites-page" },
    h("div", { class: "page-head" }, h("h1", {}, t("nav.sites")), summary),
    h("table", { class: "board sites" },
      h("thead", {}, h("tr", {}, ["state", "site", "community", "since", "heartbeat", "backlog", "unreceipted", "detail"].map((c) => h("th", {}, t(`sites.col.${c}`))))),
      body)));

  function render() {
    const sites = [...state.sites.values()].sort((a, b) => Number(a.online) - Number(b.online) || a.id.localeCompare(b.id));
    const offline = sites.filter((s) => !s.online).length;
    replace(summary,
      h("span", { class: "stat" }, t("sites.count", { n: sites.length })),
      h("span", { class: offline ? "stat bad" : "stat ok" }, t("sites.offline_count", { n: offline })));
    replace(body, sites.map((s) => h("tr", { class: s.online ? "online" : "offline", dataset: { site: s.id, online: String(!!s.online) } },
      h("td", {}, h("span", { class: s.online ? "pill online" : "pill offline" }, s.online ? t("sites.online") : t("sites.offline"))),
      h("td", {}, h("b", {}, s.id)),
      h("td", {}, s.community || "—"),
      h("td", { title: dateTime(s.since) }, s.since ? [time(s.since), h("small", {}, ago(s.since))] : t("common.never")),
      h("td", { title: dateTime(s.last_heartbeat) }, s.last_heartbeat ? ago(s.last_heartbeat) : "—"),
      h("td", { class: s.backlog ? "num warn-text" : "num" }, s.backlog ?? "—"),
      h("td", { class: s.unreceipted ? "num warn-text" : "num" }, s.unreceipted ?? "—",
        s.unreceipted && s.oldest_unreceipted_s ? h("small", {}, ` (${t("sites.oldest", { s: Math.round(s.oldest_unreceipted_s) })})`) : null),
      h("td", { class: "muted" }, s.detail === "never heard from" ? t("sites.never_heard") : s.detail || ""))));
  }

  render();
  const off = on("sites", render);
  const timer = setInterval(() => refreshSites().catch(() => {}), 5000); // heartbeats move without a change on the stream
  return () => {
    off();
    clearInterval(timer);
  };
}
