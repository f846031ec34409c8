// Every visible string comes from i18n/<language>.json; times are shown in the district's time zone.

export const LANGUAGES = { en: "English", "zh-CN": "中文" };
const STORAGE_KEY = "guardlink.language";

let language = "en";
let strings = {};
let fallback = {};
let zone = "UTC";
let formats = {};

export function preferredLanguage() {
  const stored = localStorage.getItem(STORAGE_KEY);
  if (stored in LANGUAGES) return stored;
  return (navigator.language || "").toLowerCase().startsWith("zh") ? "zh-CN" : "en";
}

async function load(code) {
  const response = await fetch(`/console/i18n/${code}.json`);
  if (!response.ok) throw new Error(`no translation ${code}: ${response.status}`);
  return response.json();
}

export async function setLanguage(code) {
  if (!(code in LANGUAGES)) code = "en";
  fallback = Object.keys(fallback).length ? fallback : await load("en");
  strings = code === "en" ? fallback : await load(code);
  language = code;
  localStorage.setItem(STORAGE_KEY, code);
  document.documentElement.lang = code;
  makeFormats();
}

export function currentLanguage() {
  return language;
}

export function setZone(name) {
  zone = name || "UTC";
  makeFormats();
}

function makeFormats() {
  const base = { timeZone: zone, hourCycle: "h23" };
  formats = {
    time: new Intl.DateTimeFormat(language, { ...base, hour: "2-digit", minute: "2-digit", second: "2-digit" }),
    dateTime: new Intl.DateTimeFormat(language, { ...base, year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit" }),
    zoneName: new Intl.DateTimeFormat(language, { timeZone: zone, timeZoneName: "short" }),
  };
}

/** The string for `key` with {placeholders} filled from `vars`; the key itself when no file has it (easy to spot). */
export function t(key, vars) {
  let text = strings[key] ?? fallback[key] ?? key;
  if (vars) text = text.replace(/\{(\w+)\}/g, (whole, name) => (name in vars ? String(vars[name]) : whole));
  return text;
}

/** A value of a closed set (incident kind, status, role ...) in the current language; the value itself if unknown. */
export function label(group, value) {
  if (value == null) return "";
  const key = `${group}.${value}`;
  return strings[key] ?? fallback[key] ?? String(value).replaceAll("_", " ");
}

export function time(iso) {
  return iso ? formats.time.format(new Date(iso)) : "";
}

/** 2026-05-01 14:03:22 in the district's zone, whatever the language: unambiguous in both. */
export function dateTime(iso) {
  if (!iso) return "";
  const part = Object.fromEntries(formats.dateTime.formatToParts(new Date(iso)).map((p) => [p.type, p.value]));
  return `${part.year}-${part.month}-${part.day} ${part.hour}:${part.minute}:${part.second}`;
}

export function zoneName() {
  const part = formats.zoneName.formatToParts(new Date()).find((p) => p.type === "timeZoneName");
  return part ? part.value : zone;
}

/** 42 -> "0:42", 3725 -> "1:02:05": short enough to tick every second in a table cell. */
export function duration(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const hours = Math.floor(s / 3600), minutes = Math.floor((s % 3600) / 60), rest = String(s % 60).padStart(2, "0");
  return hours ? `${hours}:${String(minutes).padStart(2, "0")}:${rest}` : `${minutes}:${rest}`;
}

export function distance(meters) {
  if (meters == null) return "";
  return meters < 1000 ? t("unit.m", { n: Math.round(meters) }) : t("unit.km", { n: (meters / 1000).toFixed(1) });
}

/** "3 min ago" style, for last seen and since. */
export function ago(iso, now = Date.now()) {
  if (!iso) return t("common.never");
  const s = Math.max(0, (now - Date.parse(iso)) / 1000);
  if (s < 60) return t("ago.seconds", { n: Math.floor(s) });
  if (s < 3600) return t("ago.minutes", { n: Math.floor(s / 60) });
  if (s < 86400) return t("ago.hours", { n: Math.floor(s / 3600) });
  return t("ago.days", { n: Math.floor(s / 86400) });
}
