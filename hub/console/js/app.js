// The console's shell: login, the header (navigation, clock, sound, language, logout), the reconnecting banner and the pages.

import * as api from "./api.js";
import { h, replace } from "./dom.js";
import { LANGUAGES, currentLanguage, preferredLanguage, setLanguage, setZone, t, time, zoneName } from "./i18n.js";
import { alarm, enableSound, soundReady } from "./sound.js";
import { on, start, state, stop } from "./store.js";
import * as board from "./board.js";
import * as incident from "./incident.js";
import * as districtMap from "./map.js";
import * as sites from "./sites.js";
import * as guards from "./guards.js";
import * as field from "./field.js";
import * as events from "./events.js";
import * as assessment from "./assessment.js";
import * as login from "./login.js";
import { toast } from "./toast.js";

const PAGES = { board, incident, map: districtMap, sites, guards, field, events, assessment };
const view = document.getElementById("view");
let unmount = null;
let shownRoute = null;

function route() {
  const [page, ...rest] = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  return { page: page in PAGES ? page : "board", args: rest };
}

function show() {
  const next = route();
  if (unmount) unmount();
  unmount = null;
  shownRoute = next;
  document.body.dataset.page = next.page;
  renderNav();
  view.replaceChildren();
  unmount = PAGES[next.page].mount(view, ...next.args) || null;
}

function renderNav() {
  const offline = [...state.sites.values()].filter((s) => !s.online).length;
  const links = [
    ["board", t("nav.board"), state.incidents.size],
    ["map", t("nav.map"), null],
    ["sites", t("nav.sites"), offline || null],
    ["guards", t("nav.guards"), null],
    ["field", t("nav.field"), null],
    ["events", t("nav.events"), null],
    ["assessment", t("nav.assessment"), null],
  ];
  replace(
    document.getElementById("nav"),
    links.map(([page, text, count]) =>
      h("a", { href: `#/${page}`, class: shownRoute && shownRoute.page === page ? "active" : "", "data-nav": page },
        text, count ? h("span", { class: page === "sites" ? "count bad" : "count" }, count) : null),
    ),
  );
}

function renderHeader() {
  document.title = `${t("app.title")} · ${state.settings.name}`;
  document.getElementById("district").textContent = state.settings.name;
  document.getElementById("who").textContent = `${state.me.name} · ${t(`role.${state.me.role}`)}`;
  document.getElementById("logout").textContent = t("nav.logout");
  const other = currentLanguage() === "en" ? "zh-CN" : "en";
  const languageButton = document.getElementById("language");
  languageButton.textContent = LANGUAGES[other];
  languageButton.dataset.language = other;
  renderSound();
  renderNav();
}

function renderSound() {
  const button = document.getElementById("sound");
  const ready = soundReady();
  button.textContent = ready ? t("sound.on") : t("sound.off");
  button.classList.toggle("warn", !ready);
  button.title = ready ? t("sound.on_hint") : t("sound.off_hint");
}

function tickClock() {
  document.getElementById("clock").textContent = `${time(new Date().toISOString())} ${zoneName()}`;
}

function renderBanner() {
  const banner = document.getElementById("banner");
  const down = state.connection === "reconnecting";
  banner.hidden = !down;
  document.body.dataset.connection = state.connection;
  if (down) banner.textContent = t("stream.reconnecting", { since: time(state.offlineSince) });
}

async function changeLanguage(code) {
  await setLanguage(code);
  if (state.me) {
    renderHeader();
    renderBanner();
    show();
  } else {
    showLogin();
  }
}

function showLogin(message) {
  document.getElementById("top").hidden = true;
  document.getElementById("banner").hidden = true;
  if (unmount) unmount();
  unmount = null;
  document.body.dataset.page = "login";
  document.title = t("app.title");
  login.mount(view, { message, onLoggedIn: enter, onLanguage: changeLanguage });
}

async function enter(me) {
  state.me = me;
  document.body.dataset.role = me.role;
  document.body.classList.toggle("can-command", me.can_command);
  state.settings = await api.get("/api/console/settings");
  setZone(state.settings.timezone);
  tickClock();
  document.getElementById("top").hidden = false;
  renderHeader();
  await start();
  if (!location.hash || location.hash === "#" || location.hash === "#/login") history.replaceState(null, "", "#/board");
  show();
  document.body.dataset.ready = "true";
}

async function logout() {
  stop();
  await api.post("/api/logout").catch(() => {});
  state.me = null;
  delete document.body.dataset.ready;
  document.body.classList.remove("can-command");
  showLogin(t("login.logged_out"));
}

async function boot() {
  await setLanguage(preferredLanguage());
  window.addEventListener("hashchange", () => state.me && show());
  document.getElementById("logout").addEventListener("click", logout);
  document.getElementById("language").addEventListener("click", (e) => changeLanguage(e.currentTarget.dataset.language));
  document.getElementById("sound").addEventListener("click", async () => {
    await enableSound();
    renderSound();
  });
  document.addEventListener("pointerdown", () => enableSound().then(renderSound), { once: true });
  on("connection", renderBanner);
  on("incidents", renderNav);
  on("sites", renderNav);
  let lastAlarm = 0;
  on("alert", () => {
    if (Date.now() - lastAlarm > 3000) {  // one sound for a burst (catching up after a reconnect), not a din
      lastAlarm = Date.now();
      alarm();
    }
    document.body.dataset.alerts = String(state.alerts);
    renderSound();
  });
  on("logged-out", () => {
    stop();
    state.me = null;
    showLogin(t("login.session_ended"));
  });
  on("change", (change) => {
    if (change.kind === "command" && change.payload && change.payload.by !== (state.me && state.me.name)) {
      const p = change.payload;
      toast(t("toast.command", { by: p.by, command: t(`command.${p.command}`), id: change.key.slice(-6) }));
    } else if (change.kind === "alert" && change.payload && change.payload.point) {
      toast(t(`toast.${change.payload.alert === "checkin_late" ? "checkin_late" : "checkin_missed"}`, { point: change.payload.point_name || change.payload.point, route: change.payload.route_name || "" }));
    }
  });
  setInterval(tickClock, 1000);
  tickClock();
  try {
    await enter(await api.get("/api/me"));
  } catch (error) {
    if (error.status === 401) showLogin();
    else showLogin(t("login.hub_unreachable"));
  }
}

window.guardlinkConsole = { state };
boot();
