// The district map: community outlines and sites from /api/console/map, open incidents and guards from the live state.
// No tiles unless the district file names a tile server, so it works with no internet. Guards are drawn on a canvas
// (thousands move every second); their markers are moved at most twice a second, in an animation frame.

import * as api from "./api.js";
import { h, replace } from "./dom.js";
import { ago, label, t } from "./i18n.js";
import { guardKeysOf, on, state } from "./store.js";
import * as L from "../vendor/leaflet/leaflet-src.esm.js";

export const SEVERITY_COLOURS = { critical: "#d32f2f", warning: "#f57c00", info: "#1976d2" };
const GUARDS_PAINT_MS = 500;
// guards: small dots, in colours no incident uses (incidents: big, ringed, red / orange / blue by severity)
export const GUARD_COLOURS = { available: "#2e7d32", offered: "#fdd835", assigned: "#00acc1", on_scene: "#8e24aa", off_duty: "#9e9e9e" };

export function mount(root) {
  const holder = h("div", { id: "map", class: "map" });
  const legend = h("div", { class: "legend" });
  replace(root, h("section", { class: "page map-page" }, holder, legend));
  const map = L.map(holder, { zoomSnap: 0.25, zoomControl: true, attributionControl: !!state.settings.tiles });
  if (state.settings.tiles) L.tileLayer(state.settings.tiles, { attribution: state.settings.tile_attribution, maxZoom: 19 }).addTo(map);
  else holder.classList.add("no-tiles");
  const canvas = L.canvas({ padding: 0.2 });
  const outlines = L.layerGroup().addTo(map);
  const siteLayer = L.layerGroup().addTo(map);
  const guardLayer = L.layerGroup().addTo(map);
  const incidentLayer = L.layerGroup().addTo(map);
  const siteMarkers = new Map();
  const guardMarkers = new Map();
  const incidentMarkers = new Map();
  map.setView([0, 0], 2);

  renderLegend(legend);

  function link(href, text) {
    return h("a", { href }, text);
  }

  function sitePopup(id, name) {
    const site = state.sites.get(id) || {};
    return h("div", { class: "popup" }, h("b", {}, name), h("br"),
      site.online ? t("sites.online_since", { since: ago(site.since) }) : t("sites.offline_since", { since: ago(site.since) }), h("br"),
      link("#/sites", t("nav.sites")));
  }

  function paintSite(id) {
    const marker = siteMarkers.get(id);
    if (!marker) return;
    const online = !!(state.sites.get(id) || {}).online;
    marker.setStyle({ color: online ? "#1b5e20" : "#b71c1c", fillColor: online ? "#66bb6a" : "#9e9e9e", dashArray: online ? null : "3 3" });
    marker.getElement()?.setAttribute("data-online", online ? "true" : "false");
  }

  async function loadOutlines() {
    const geo = await api.get("/api/console/map");
    const bounds = L.latLngBounds([]);
    const few = geo.features.filter((f) => f.properties.kind === "site").length <= 30; // names on the map only while they fit
    for (const feature of geo.features) {
      const p = feature.properties;
      if (p.kind === "community") {
        const layer = L.geoJSON(feature, { style: { color: "#37474f", weight: 2, fillColor: "#90a4ae", fillOpacity: 0.12 } }).addTo(outlines);
        const edge = layer.getBounds();
        L.tooltip({ permanent: true, direction: "top", className: "community-label", offset: [0, -2] })
          .setLatLng([edge.getNorth(), edge.getCenter().lng]).setContent(p.name).addTo(outlines);
        bounds.extend(edge);
      } else if (p.kind === "site" && feature.geometry) {
        const [lon, lat] = feature.geometry.coordinates;
        const marker = L.circleMarker([lat, lon], { radius: 9, weight: 3, fillOpacity: 0.9 })
          .bindTooltip(p.name, { direction: "right", offset: [10, 0], permanent: few, className: "site-label" })
          .bindPopup(() => sitePopup(p.id, p.name))
          .addTo(siteLayer);
        siteMarkers.set(p.id, marker);
        marker.getElement()?.setAttribute("data-site", p.id);
        paintSite(p.id);
        bounds.extend([lat, lon]);
      }
    }
    for (const incident of state.incidents.values()) if (incident.lat != null) bounds.extend([incident.lat, incident.lon]);
    if (bounds.isValid()) map.fitBounds(bounds.pad(0.15));
  }

  function paintIncidents() {
    const seen = new Set();
    for (const r of state.incidents.values()) {
      if (r.lat == null) continue;
      seen.add(r.id);
      let marker = incidentMarkers.get(r.id);
      const style = { radius: r.severity === "critical" ? 14 : 11, color: "#fff", weight: 3, fillColor: SEVERITY_COLOURS[r.severity], fillOpacity: r.test ? 0.45 : 0.95 };
      if (!marker) {
        marker = L.circleMarker([r.lat, r.lon], style).addTo(incidentLayer);
        marker.on("click", () => { location.hash = `#/incident/${encodeURIComponent(r.id)}`; });
        incidentMarkers.set(r.id, marker);
      } else {
        marker.setLatLng([r.lat, r.lon]).setStyle(style);
      }
      marker.bindTooltip(`${label("kind", r.kind)}${r.test ? ` (${t("board.test")})` : ""} · ${r.site_name || r.site} · ${label("status", r.status)}`, { direction: "top", offset: [0, -12] });
      const el = marker.getElement();
      if (el) {
        el.setAttribute("data-incident", r.id);
        el.classList.toggle("pulse", r.severity === "critical" && !r.acknowledged_by && !r.test);
      }
    }
    for (const [id, marker] of incidentMarkers) {
      if (!seen.has(id)) {
        marker.remove();
        incidentMarkers.delete(id);
      }
    }
  }

  function guardPopup(key) {
    const g = state.guards.get(key);
    if (!g) return "";
    return h("div", { class: "popup" }, h("b", {}, g.name), " · ", label("guard_state", g.state), h("br"),
      g.site, " · ", ago(g.position_at || g.updated_at), h("br"),
      g.job ? [link(`#/incident/${encodeURIComponent(g.job)}`, t("guards.open_job")), " · "] : null,
      link(`#/guards/${encodeURIComponent(g.site)}/${encodeURIComponent(g.id)}`, t("guards.show")));
  }

  let dirty = new Set();
  let frame = 0;
  function paintGuards() {
    frame = 0;
    const sites = dirty;
    dirty = new Set();
    for (const key of sites === null ? state.guards.keys() : guardKeysOf(sites)) {
      const g = state.guards.get(key);
      let marker = guardMarkers.get(key);
      if (!g || g.lat == null) {
        if (marker) marker.remove();
        guardMarkers.delete(key);
        continue;
      }
      const colour = GUARD_COLOURS[g.state] || "#607d8b";
      if (!marker) {
        marker = L.circleMarker([g.lat, g.lon], { renderer: canvas, radius: 5, weight: 1.5, color: "#ffffff", fillColor: colour, fillOpacity: 1 })
          .bindPopup(() => guardPopup(key)).addTo(guardLayer);
        marker.options.colourOf = colour;
        guardMarkers.set(key, marker);
      } else {
        const at = marker.getLatLng();
        if (at.lat !== g.lat || at.lng !== g.lon) marker.setLatLng([g.lat, g.lon]);
        if (marker.options.colourOf !== colour) {
          marker.options.colourOf = colour;
          marker.setStyle({ fillColor: colour });
        }
      }
    }
    for (const [key, marker] of guardMarkers) {
      if (!state.guards.has(key)) {
        marker.remove();
        guardMarkers.delete(key);
      }
    }
    holder.dataset.guards = String(guardMarkers.size);
  }

  // Sites report about once a second: twice a second is as smooth as the data, and each repaint redraws the canvas.
  let lastPaint = 0;
  function guardsChanged(site) {
    if (site === null) dirty = null;
    else if (dirty !== null) dirty.add(site);
    if (frame) return;
    const wait = Math.max(0, GUARDS_PAINT_MS - (performance.now() - lastPaint));
    frame = setTimeout(() => requestAnimationFrame(() => {
      lastPaint = performance.now();
      paintGuards();
    }), wait);
  }

  loadOutlines().catch((error) => console.warn("map outlines", error)).finally(() => {
    paintIncidents();
    dirty = null;
    paintGuards();
  });
  const offs = [
    on("incidents", paintIncidents),
    on("sites", (id) => (id ? paintSite(id) : [...siteMarkers.keys()].forEach(paintSite))),
    on("guards", guardsChanged),
  ];
  holder.dataset.ready = "true";
  return () => {
    offs.forEach((off) => off());
    clearTimeout(frame);
    map.remove();
  };
}

function renderLegend(legend) {
  replace(legend,
    h("b", {}, t("map.legend")),
    h("div", {}, h("span", { class: "dot", style: `background:${SEVERITY_COLOURS.critical}` }), t("map.incident")),
    h("div", {}, h("span", { class: "dot ring", style: "background:#66bb6a;border-color:#1b5e20" }), t("map.site_online")),
    h("div", {}, h("span", { class: "dot ring", style: "background:#9e9e9e;border-color:#b71c1c" }), t("map.site_offline")),
    Object.entries(GUARD_COLOURS).map(([s, colour]) => h("div", {}, h("span", { class: "dot small", style: `background:${colour}` }), t("map.guard", { state: label("guard_state", s) }))));
}
