// The events page: every large event with its headcount against need; one event's headcount per sector and role (a
// table, red where short) and its venue and sectors on a map coloured by how full each is, its guards, its latest roll
// call, and the dispatcher's actions (call up for the gaps, roll call, stand down). Read from the API, read again when
// the stream brings an `event` change (a chief's stream carries none: their page reads again every few seconds).

import * as api from "./api.js";
import { h, replace } from "./dom.js";
import { dateTime, distance, label, t, time } from "./i18n.js";
import { on, state } from "./store.js";
import { toast } from "./toast.js";
import * as L from "../vendor/leaflet/leaflet-src.esm.js";

const GUARD_STATES = ["arrived", "confirmed", "called", "no_answer", "declined", "no_show", "stood_down"];
const GUARDS_SHOWN = 300; // rows of the guards table; the counts above it cover everyone
const CHIEF_REFRESH_MS = 10_000;

/** How full a sector is: "full" (everyone there), "coming" (short now, enough confirmed), "short" (not enough coming). */
export function fullness(row) {
  if (row.arrived >= row.needed) return "full";
  return row.arrived + row.confirmed >= row.needed ? "coming" : "short";
}

const FILL_COLOURS = { full: "#2e7d32", coming: "#f57c00", short: "#d32f2f" };

function canRun() {
  return !!state.me && state.me.role === "dispatcher";
}

function live(reload, key = null) {
  let pending = null;
  const off = on("change", (change) => {
    if (change.kind !== "event" || (key && change.key !== key) || pending) return;
    pending = setTimeout(() => { pending = null; reload(); }, 200); // a burst of check-ins: one read
  });
  const poll = state.me && state.me.role === "chief" ? setInterval(reload, CHIEF_REFRESH_MS) : null;
  return () => {
    off();
    clearTimeout(pending);
    clearInterval(poll);
  };
}

export function mount(root, id) {
  return id ? mountEvent(root, id) : mountList(root);
}

// --- the list ---------------------------------------------------------------------------------------------------------

function mountList(root) {
  const body = h("tbody");
  const summary = h("div", { class: "summary" });
  replace(root, h("section", { class: "page events-page" },
    h("div", { class: "page-head" }, h("h1", {}, t("nav.events")), summary),
    h("table", { class: "board events" },
      h("thead", {}, h("tr", {}, ["state", "name", "window", "headcount", "gap"].map((c) => h("th", {}, t(`events.col.${c}`))))),
      body)));

  function render(events) {
    const open = events.filter((e) => e.state === "open");
    replace(summary,
      h("span", { class: "stat" }, t("events.open_count", { n: open.length })),
      h("span", { class: "stat" }, t("events.arrived_of", { arrived: sum(open, "arrived"), needed: sum(open, "needed") })));
    replace(body, events.map((e) => h("tr", {
      class: `event-row state-${e.state} fill-${e.state === "open" ? fullness(e) : "ended"}`, dataset: { event: e.id, state: e.state },
      onclick: () => { location.hash = `#/events/${encodeURIComponent(e.id)}`; },
    },
      h("td", {}, h("span", { class: `pill event-${e.state}` }, label("event_state", e.state))),
      h("td", {}, h("a", { href: `#/events/${encodeURIComponent(e.id)}` }, h("b", {}, e.name)), h("small", {}, e.id)),
      h("td", { title: `${dateTime(e.starts_at)} – ${dateTime(e.ends_at)}` }, dateTime(e.starts_at), h("small", {}, `– ${dateTime(e.ends_at)}`)),
      h("td", { class: "headcount" }, meter(e.arrived, e.needed, e.confirmed)),
      h("td", { class: e.gap ? "num bad-text" : "num" }, e.gap))));
    if (!events.length) body.append(h("tr", {}, h("td", { colspan: 5, class: "muted" }, t("events.none"))));
  }

  let alive = true;
  const load = () => api.get("/api/events").then((events) => alive && render(events))
    .catch((error) => toast(t("events.load_failed", { error: error.message })));
  const stop = live(load);
  load();
  return () => {
    alive = false;
    stop();
  };
}

function sum(rows, key) {
  return rows.reduce((total, r) => total + (r[key] || 0), 0);
}

/** "37 / 40" with a bar: arrived solid, confirmed (coming) lighter. */
function meter(arrived, needed, confirmed = 0) {
  const pct = (n) => `${needed ? Math.min(100, (100 * n) / needed) : 0}%`;
  const state = fullness({ arrived, needed, confirmed });
  return h("div", { class: `meter fill-${state}` },
    h("span", { class: "meter-text" }, h("b", { class: "arrived" }, arrived), ` / ${needed}`),
    h("span", { class: "meter-bar" },
      h("span", { class: "meter-arrived", style: `width:${pct(arrived)}` }),
      h("span", { class: "meter-coming", style: `width:${pct(Math.min(confirmed, Math.max(needed - arrived, 0)))}` })));
}

// --- one event --------------------------------------------------------------------------------------------------------

function mountEvent(root, id) {
  const path = `/api/events/${encodeURIComponent(id)}`;
  const title = h("h1", {}, id);
  const summary = h("div", { class: "summary" });
  const actions = h("div", { class: "event-actions" });
  const sectors = h("tbody");
  const guardCounts = h("div", { class: "guard-filter" });
  const guardRows = h("tbody");
  const guardMore = h("p", { class: "muted" });
  const rollCall = h("div", { class: "roll-call" });
  const holder = h("div", { class: "map event-map" });
  const legend = h("div", { class: "legend" }, ["full", "coming", "short"].map((f) =>
    h("span", {}, h("i", { class: "swatch", style: `background:${FILL_COLOURS[f]}` }), t(`events.fill.${f}`))));
  replace(root, h("section", { class: "page event-page" },
    h("a", { href: "#/events", class: "back" }, `← ${t("nav.events")}`),
    h("div", { class: "page-head" }, title, summary),
    actions,
    h("div", { class: "event-grid" },
      h("div", { class: "panel" }, h("h2", {}, t("events.headcount")),
        h("table", { class: "board sectors" },
          h("thead", {}, h("tr", {}, ["sector", "role", "present", "confirmed", "called", "gap"].map((c) => h("th", {}, t(`events.col.${c}`))))),
          sectors)),
      h("div", { class: "panel map-panel" }, holder, legend)),
    h("div", { class: "event-grid lower" },
      h("div", { class: "panel guards-panel" }, h("h2", {}, t("events.guards")), guardCounts,
        h("table", { class: "board event-guards" },
          h("thead", {}, h("tr", {}, ["state", "guard", "sector", "company", "distance", "answered"].map((c) => h("th", {}, t(`events.col.${c}`))))),
          guardRows),
        guardMore),
      h("div", { class: "panel" }, h("h2", {}, t("events.roll_call")), rollCall))));

  const map = L.map(holder, { zoomSnap: 0.25, attributionControl: !!state.settings.tiles });
  if (state.settings.tiles) L.tileLayer(state.settings.tiles, { attribution: state.settings.tile_attribution, maxZoom: 19 }).addTo(map);
  else holder.classList.add("no-tiles");
  map.setView([0, 0], 2);
  const shapes = L.layerGroup().addTo(map);
  const sectorShapes = new Map();
  let framed = false;
  let filter = null; // a guard state to show, or null: everyone
  let event = null;
  let guards = [];

  async function act(what, request, done) {
    try {
      const answer = await request();
      toast(done(answer));
      await load();
    } catch (error) {
      toast(t("events.action_failed", { action: t(`events.action.${what}`), error: error.message }));
    }
  }

  function renderActions() {
    if (!canRun() || event.state !== "open") {
      replace(actions);
      return;
    }
    const within = h("input", { type: "number", min: 1, max: 60, value: 5, class: "within", "aria-label": t("events.within_minutes") });
    replace(actions,
      h("button", { type: "button", class: "primary fill", disabled: !event.gap, title: t("events.fill_hint"),
        onclick: () => act("fill", () => api.post(`${path}/fill`), (a) => t("events.called_now", { n: a.called_now })) },
        t("events.action.fill"), event.gap ? ` (${event.gap})` : ""),
      h("span", { class: "roll-call-form" },
        h("button", { type: "button", class: "roll-call-start",
          onclick: () => act("roll_call", () => api.post(`${path}/roll-calls`, { within_s: Math.max(1, Number(within.value) || 5) * 60 }),
            (a) => t("events.roll_call_started", { number: a.number, asked: a.asked })) }, t("events.action.roll_call")),
        " ", t("events.within"), " ", within, " ", t("events.minutes")),
      h("button", { type: "button", class: "danger stand-down",
        onclick: () => {
          if (!confirm(t("events.stand_down_confirm", { name: event.name }))) return;
          act("stand_down", () => api.post(`${path}/stand-down`, {}), (a) => t("events.stood_down", { n: a.stood_down }));
        } }, t("events.action.stand_down")));
  }

  function render() {
    title.textContent = event.name;
    const coming = event.confirmed + event.arrived;
    replace(summary,
      h("span", { class: `stat event-${event.state}` }, label("event_state", event.state)),
      h("span", { class: `stat big fill-${fullness(event)}`, "data-headcount": `${event.arrived}/${event.needed}` },
        t("events.present_of", { arrived: event.arrived, needed: event.needed })),
      h("span", { class: "stat" }, t("events.coming", { n: coming })),
      h("span", { class: event.gap ? "stat bad" : "stat ok" }, t("events.gap", { n: event.gap })),
      h("span", { class: "stat muted" }, `${dateTime(event.starts_at)} – ${time(event.ends_at)}`));
    renderActions();
    const names = new Map(event.sectors.map((s) => [s.id, s.name]));
    replace(sectors, event.headcount.map((row) => {
      const fill = fullness(row);
      return h("tr", { class: `fill-${fill}`, dataset: { sector: row.sector, role: row.role, fill } },
        h("td", {}, h("b", {}, names.get(row.sector) || row.sector)),
        h("td", {}, label("guard_role", row.role)),
        h("td", { class: "headcount" }, meter(row.arrived, row.needed, row.confirmed)),
        h("td", { class: "num" }, row.confirmed),
        h("td", { class: "num" }, row.called),
        h("td", { class: row.gap ? "num bad-text" : "num" }, row.gap));
    }));
    paintMap(names);
  }

  function paintMap(names) {
    const bySector = new Map();
    for (const row of event.headcount) {
      const s = bySector.get(row.sector) || { arrived: 0, needed: 0, confirmed: 0 };
      s.arrived += row.arrived;
      s.needed += row.needed;
      s.confirmed += row.confirmed;
      bySector.set(row.sector, s);
    }
    if (!framed) {
      const venue = L.geoJSON(event.venue, { style: { color: "#0f2a44", weight: 3, dashArray: "6 4", fill: false } }).addTo(shapes);
      const area = L.latLngBounds([]);
      for (const s of event.sectors) {
        const shape = L.geoJSON(s.area, { style: { weight: 2, fillOpacity: 0.45 } }).addTo(shapes);
        shape.bindTooltip("", { permanent: true, direction: "center", className: "sector-label" });
        sectorShapes.set(s.id, shape);
        area.extend(shape.getBounds());
      }
      map.fitBounds((area.isValid() ? area : venue.getBounds()).pad(0.15)); // the sectors fill the view: that is where the guards are
      framed = true;
    }
    for (const [sector, shape] of sectorShapes) {
      const count = bySector.get(sector) || { arrived: 0, needed: 0, confirmed: 0 };
      const fill = fullness(count);
      shape.setStyle({ color: FILL_COLOURS[fill], fillColor: FILL_COLOURS[fill] });
      shape.setTooltipContent(`${names.get(sector) || sector} · ${count.arrived}/${count.needed}`);
      shape.eachLayer((layer) => layer.getElement()?.setAttribute("data-sector", sector));
      shape.eachLayer((layer) => layer.getElement()?.setAttribute("data-fill", fill));
    }
  }

  function renderGuards() {
    const counts = new Map();
    for (const g of guards) counts.set(g.state, (counts.get(g.state) || 0) + 1);
    replace(guardCounts,
      h("button", { type: "button", class: filter ? "link" : "link active", onclick: () => { filter = null; renderGuards(); } },
        t("events.all_guards", { n: guards.length })),
      GUARD_STATES.filter((s) => counts.get(s)).map((s) => h("button", {
        type: "button", class: `link ${filter === s ? "active" : ""}`, dataset: { state: s }, onclick: () => { filter = s; renderGuards(); },
      }, h("span", { class: `pill event-guard-${s}` }, label("event_guard_state", s)), ` ${counts.get(s)}`)));
    const shown = guards.filter((g) => !filter || g.state === filter);
    const names = new Map(event.sectors.map((s) => [s.id, s.name]));
    replace(guardRows, shown.slice(0, GUARDS_SHOWN).map((g) => h("tr", { dataset: { guard: g.guard, state: g.state } },
      h("td", {}, h("span", { class: `pill event-guard-${g.state}` }, label("event_guard_state", g.state)),
        g.released ? h("small", {}, t("events.released")) : null),
      h("td", {}, h("b", {}, g.guard), h("small", {}, g.site || "")),
      h("td", {}, names.get(g.sector) || g.sector, h("small", {}, label("guard_role", g.role))),
      h("td", {}, g.company),
      h("td", { class: "num" }, distance(g.distance_m)),
      h("td", { title: dateTime(g.arrived_at || g.answered_at) }, time(g.arrived_at || g.answered_at) || "—"))));
    guardMore.textContent = shown.length > GUARDS_SHOWN ? t("events.more_guards", { n: shown.length - GUARDS_SHOWN }) : "";
  }

  function renderRollCall(call) {
    if (!call.number) {
      replace(rollCall, h("p", { class: "muted" }, t("events.no_roll_call")));
      return;
    }
    replace(rollCall,
      h("p", {}, h("b", {}, t("events.roll_call_number", { number: call.number })), " ",
        h("span", { class: `pill ${call.open ? "event-open" : "event-ended"}` }, call.open ? t("events.roll_call_open", { due: time(call.due_at) }) : t("events.roll_call_closed"))),
      h("p", { class: "roll-call-result", dataset: { asked: call.asked, answered: call.answered, silent: call.silent.length } },
        t("events.roll_call_answered", { answered: call.answered, asked: call.asked })),
      call.silent.length
        ? [h("h3", { class: "bad-text" }, t("events.silent", { n: call.silent.length })),
          h("ul", { class: "silent" }, call.silent.slice(0, GUARDS_SHOWN).map((g) => h("li", { dataset: { guard: g.guard } },
            h("b", {}, g.guard), h("span", { class: "muted" }, ` · ${g.sector} · ${g.site || ""}`))))]
        : h("p", { class: "ok-text" }, t("events.nobody_silent")));
  }

  let alive = true;
  async function load() {
    const [shown, list, call] = await Promise.all([api.get(path), api.get(`${path}/guards`), api.get(`${path}/roll-call`)]);
    if (!alive) return;
    event = shown;
    guards = list;
    render();
    renderGuards();
    renderRollCall(call);
    root.querySelector(".event-page").dataset.loaded = "true";
  }
  const reload = () => load().catch((error) => toast(t("events.load_failed", { error: error.message })));
  const stop = live(reload, id);
  reload();
  return () => {
    alive = false;
    stop();
    map.remove();
  };
}
