// What the console knows: open incidents, sites and guards, kept current by the hub's live stream.
// Start: the snapshot (open incidents and the change id it was read after), sites and guards; then /api/stream from that id.
// The stream resumes by itself (EventSource sends Last-Event-ID); when the browser gives up (the hub answered an error
// while restarting), a new stream starts after the last change seen, so nothing is missed either way.

import * as api from "./api.js";

export const SEVERITY_RANK = { critical: 0, warning: 1, info: 2 };
const FINAL = new Set(["resolved", "false_alarm", "closed"]);

export const state = {
  me: null,
  settings: null,
  incidents: new Map(), // id -> board row (open incidents only)
  sites: new Map(), // id -> site view
  guards: new Map(), // "site/guard" -> guard view
  lastEventId: 0,
  connection: "connecting", // connecting | live | reconnecting
  offlineSince: null, // when the stream last dropped
  alerts: 0,
};

const listeners = new Map();

/** Call `fn(detail)` on `topic`: incidents, sites, guards, change (every stream event), connection, alert. Returns an unsubscribe. */
export function on(topic, fn) {
  if (!listeners.has(topic)) listeners.set(topic, new Set());
  listeners.get(topic).add(fn);
  return () => listeners.get(topic).delete(fn);
}

function emit(topic, detail) {
  for (const fn of listeners.get(topic) || []) {
    try {
      fn(detail);
    } catch (error) {
      console.error(`listener of ${topic} failed`, error);
    }
  }
}

export function needsAcknowledgement(row) {
  return !row.acknowledged_by && !row.test && row.severity !== "info";
}

/** When it was detected, in epoch ms (parsed once per row). */
export function detectedMs(row) {
  return (row.detectedMs ??= Date.parse(row.detected_at));
}

export function isOverdue(row, now = Date.now()) {
  return needsAcknowledgement(row) && now - detectedMs(row) > state.settings.ack_within_s * 1000;
}

export function guardKey(site, id) {
  return `${site}/${id}`;
}

// --- loading ----------------------------------------------------------------------------------------------------------

let source = null;
let retryTimer = null;
let stopped = true;

export async function start() {
  stopped = false;
  const snapshot = await api.get("/api/console/snapshot");
  state.incidents = new Map(snapshot.incidents.map((row) => [row.id, row]));
  state.lastEventId = snapshot.after;
  const [sites, guards] = await Promise.all([api.get("/api/sites"), api.get("/api/guards")]);
  state.sites = new Map(sites.map((s) => [s.id, s]));
  state.guards = new Map(guards.map((g) => [guardKey(g.site, g.id), g]));
  guardsOfSite.clear();
  for (const g of guards) {
    if (!guardsOfSite.has(g.site)) guardsOfSite.set(g.site, new Set());
    guardsOfSite.get(g.site).add(guardKey(g.site, g.id));
  }
  emit("incidents", null);
  emit("sites", null);
  emit("guards", null);
  connect();
  clearInterval(healthTimer);
  healthTimer = setInterval(checkHealth, HEALTH_EVERY_MS);
}

// A dropped network may leave the stream open but silent (its keepalives are comments, which EventSource does not show):
// ask the hub every few seconds, and start the stream over when it does not answer.
const HEALTH_EVERY_MS = 5000;
let healthTimer = null;

async function checkHealth() {
  if (stopped || !source) return;
  const answer = await fetch("/health", { signal: AbortSignal.timeout(4000), cache: "no-store" }).catch(() => null);
  if (stopped || !source) return;
  if (answer && answer.ok) return;
  setConnection("reconnecting");
  const stream = source;
  stream.close();
  clearTimeout(retryTimer);
  retryTimer = setTimeout(() => recover(stream), 1000);
}

export function stop() {
  stopped = true;
  clearInterval(healthTimer);
  clearTimeout(retryTimer);
  if (source) source.close();
  source = null;
}

/** Sites again (their last heartbeat moves without a change on the stream). */
export async function refreshSites() {
  const sites = await api.get("/api/sites");
  state.sites = new Map(sites.map((s) => [s.id, s]));
  emit("sites", null);
}

// --- the stream ------------------------------------------------------------------------------------------------------

function setConnection(connection) {
  if (state.connection === connection) return;
  if (connection === "reconnecting" && state.connection === "live") state.offlineSince = new Date().toISOString();
  state.connection = connection;
  emit("connection", connection);
}

function connect() {
  if (stopped) return;
  const stream = new EventSource(`/api/stream?after=${state.lastEventId}`);
  source = stream;
  stream.onopen = () => {
    if (source !== stream) return;
    const wasDown = state.connection === "reconnecting";
    setConnection("live");
    if (wasDown) refreshSites().catch(() => {});
  };
  stream.onerror = () => {
    if (source !== stream) return;
    setConnection("reconnecting");
    if (stream.readyState === EventSource.CLOSED) {
      // The browser gave up (an error answer while the hub restarts, or the session ended): try again after the last id.
      retryTimer = setTimeout(() => recover(stream), 1000);
    }
  };
  for (const kind of ["escalation", "site", "guards", "command", "evidence", "task", "alert", "checkin", "tip", "event"]) {
    stream.addEventListener(kind, (event) => {
      if (source !== stream) return;
      const change = JSON.parse(event.data);
      state.lastEventId = Math.max(state.lastEventId, change.id);
      apply(change);
      emit("change", change);
    });
  }
}

async function recover(stream) {
  if (stopped || source !== stream) return;
  try {
    await api.get("/api/me");
  } catch (error) {
    if (error.status === 401) {
      emit("logged-out", null);
      return;
    }
    retryTimer = setTimeout(() => recover(stream), 1000);
    return;
  }
  connect();
}

function apply(change) {
  const p = change.payload || {};
  if (change.kind === "escalation") {
    if (p.latest === false) return; // an older revision arriving late
    sketch(change);
    want(change.key);
  } else if (change.kind === "site") {
    const before = state.sites.get(change.key) || { id: change.key };
    state.sites.set(change.key, { ...before, ...p, id: change.key });
    emit("sites", change.key);
  } else if (change.kind === "guards") {
    applyGuards(change.key, p);
  }
}

const guardsOfSite = new Map(); // site -> Set of guard keys, so a report replaces its site's roster without a scan of all guards

/** The keys of the guards of these sites. */
export function* guardKeysOf(sites) {
  for (const site of sites) yield* guardsOfSite.get(site) || [];
}

function applyGuards(site, report) {
  const at = report.at;
  const seen = new Set();
  for (const guard of report.guards || []) {
    const key = guardKey(site, guard.id);
    seen.add(key);
    state.guards.set(key, {
      site, id: guard.id, name: guard.name, roles: guard.roles || [], state: guard.state, job: guard.job ?? null,
      lat: guard.location ? guard.location.lat : null, lon: guard.location ? guard.location.lon : null,
      accuracy_m: guard.accuracy_m ?? null, position_at: guard.position_at ?? null, updated_at: at,
    });
  }
  for (const key of guardsOfSite.get(site) || []) {
    if (!seen.has(key)) state.guards.delete(key); // a report is the site's whole roster
  }
  guardsOfSite.set(site, seen);
  emit("guards", site);
}

// --- incidents: a change names one, its board row is read (batched: one request for everything waiting) -------------

/** What the change itself says, shown at once (severity, kind, site, status: enough to act on and to sound the alert);
 * the device, zone, guards and the site's name follow with the row read from the hub a moment later. */
function sketch(change) {
  const p = change.payload;
  const known = state.incidents.get(change.key);
  if (known && known.revision >= p.revision) return;
  if (FINAL.has(p.status)) {
    if (known) {
      state.incidents.delete(change.key);
      emit("incidents", [change.key]);
    }
    return;
  }
  const row = known
    ? { ...known, revision: p.revision, status: p.status, severity: p.severity }
    : { id: change.key, site: p.site, community: p.community, site_name: null, revision: p.revision, status: p.status, kind: p.kind, severity: p.severity,
        device: null, zone: null, test: p.kind === "test", guards_needed: 0, acknowledged_by: null, assignments: [], detected_at: change.at, provisional: true };
  upsert([row]);
}

const wanted = new Set();
let reading = false;

function want(id) {
  wanted.add(id);
  if (!reading) readWanted();
}

async function readWanted() {
  reading = true;
  try {
    while (wanted.size) {
      const ids = [...wanted].slice(0, 200);
      ids.forEach((id) => wanted.delete(id));
      const query = ids.map((id) => `id=${encodeURIComponent(id)}`).join("&");
      try {
        upsert(await api.get(`/api/console/incidents?${query}`));
      } catch (error) {
        console.warn("could not read incidents", error);
        ids.forEach((id) => wanted.add(id));
        await new Promise((resolve) => setTimeout(resolve, 1000));
        if (stopped) return;
      }
    }
  } finally {
    reading = false;
  }
}

function upsert(rows) {
  const changed = [];
  for (const row of rows) {
    const known = state.incidents.get(row.id);
    if (known && known.revision > row.revision) continue;
    changed.push(row.id);
    if (FINAL.has(row.status)) {
      state.incidents.delete(row.id);
      continue;
    }
    state.incidents.set(row.id, row);
    if (!known && row.severity === "critical" && needsAcknowledgement(row)) {
      state.alerts += 1;
      emit("alert", row);
    }
  }
  if (changed.length) emit("incidents", changed);
}

/** Sorted for the board: severity, those waiting for the police first, then the newest first; test presses last. */
export function boardOrder(rows) {
  const rank = (r) => Number(r.test) * 8 + SEVERITY_RANK[r.severity] * 2 + (needsAcknowledgement(r) ? 0 : 1);
  return [...rows]
    .map((r) => [rank(r), detectedMs(r), r])
    .sort((a, b) => a[0] - b[0] || b[1] - a[1] || (a[2].id < b[2].id ? 1 : -1))
    .map((entry) => entry[2]);
}

export async function command(id, body) {
  return api.post(`/api/incidents/${encodeURIComponent(id)}/commands`, body);
}
