// The assessment page: choose a month and a community (a chief: only their own), see the hub's HTML report (charts
// first, tables below) in a frame, and download it as HTML or CSV. Route: #/assessment/<period>/<community>.

import * as api from "./api.js";
import { h, replace } from "./dom.js";
import { currentLanguage, t } from "./i18n.js";
import { state } from "./store.js";

const ALL = "";

/** This month in the district's time zone, as 2026-11. */
function thisMonth() {
  const parts = Object.fromEntries(new Intl.DateTimeFormat("en-CA", { timeZone: state.settings.timezone, year: "numeric", month: "2-digit" })
    .formatToParts(new Date()).map((p) => [p.type, p.value]));
  return `${parts.year}-${parts.month}`;
}

export function mount(root, period, community) {
  const month = h("input", { type: "month", id: "assessment-period", value: /^\d{4}-\d{2}$/.test(period || "") ? period : thisMonth(), required: true });
  const communities = h("select", { id: "assessment-community" });
  const html = h("a", { class: "download", "data-format": "html", download: "" }, t("assessment.download_html"));
  const csv = h("a", { class: "download", "data-format": "csv", download: "" }, t("assessment.download_csv"));
  const status = h("p", { class: "muted assessment-status" });
  const frame = h("iframe", { class: "assessment-report", title: t("assessment.report_title") });
  replace(root, h("section", { class: "page assessment-page" },
    h("div", { class: "page-head" }, h("h1", {}, t("nav.assessment")),
      h("form", { class: "assessment-form", onsubmit: (e) => { e.preventDefault(); choose(); } },
        h("label", {}, t("assessment.period"), " ", month),
        h("label", {}, t("assessment.community"), " ", communities),
        h("button", { type: "submit", class: "primary" }, t("assessment.show")),
        h("span", { class: "downloads" }, html, csv))),
    status, frame));

  function query(format) {
    const params = new URLSearchParams({ period: month.value, format });
    if (communities.value) params.set("community", communities.value);
    if (format === "html") params.set("lang", currentLanguage()); // the report in the console's language; CSV keeps its English columns
    return `/api/reports/assessment?${params}`;
  }

  function choose() {
    const path = ["#/assessment", month.value, communities.value].filter((p, i) => i < 2 || p).map((p, i) => (i ? encodeURIComponent(p) : p)).join("/");
    history.replaceState(null, "", path);
    show();
  }

  let alive = true;
  let asked = 0;
  async function show() {
    if (!month.value) return;
    html.href = query("html");
    csv.href = query("csv");
    const mine = ++asked;
    status.textContent = t("assessment.loading");
    frame.hidden = true;
    const response = await fetch(query("html"), { credentials: "same-origin" }).catch(() => null);
    if (!alive || mine !== asked) return;
    if (!response || !response.ok) {
      const detail = response ? await response.json().then((d) => d.detail).catch(() => response.statusText) : t("assessment.unreachable");
      status.textContent = t("assessment.failed", { error: detail });
      return;
    }
    const text = await response.text();
    if (!alive || mine !== asked) return;
    frame.onload = () => {
      const doc = frame.contentDocument;
      if (doc) frame.style.height = `${doc.documentElement.scrollHeight + 20}px`; // the page scrolls, not the frame
      status.textContent = "";
      frame.dataset.period = month.value;
      frame.dataset.community = communities.value;
    };
    frame.hidden = false;
    frame.srcdoc = text;
  }

  async function loadCommunities() {
    const geo = await api.get("/api/console/map");
    const mine = geo.features.filter((f) => f.properties.kind === "community").map((f) => f.properties);
    const chief = state.me.role === "chief";
    const options = [
      ...(chief ? [] : [h("option", { value: ALL }, t("assessment.all_communities"))]),
      ...mine.map((c) => h("option", { value: c.id }, c.name)),
    ];
    replace(communities, options);
    const wanted = mine.some((c) => c.id === community) ? community : chief && mine.length ? mine[0].id : ALL;
    communities.value = wanted;
  }

  loadCommunities().catch(() => replace(communities, h("option", { value: ALL }, t("assessment.all_communities")))).then(() => alive && show());
  return () => {
    alive = false;
  };
}
