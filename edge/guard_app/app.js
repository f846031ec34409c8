// The guard app: offers and tasks with their answers, the man-down cancel, checkpoint scans and information tips.
// Everything a guard sends goes through a queue kept in localStorage and is sent again until the edge takes it,
// so answers given on a poor connection are not lost. Text from the network is only ever set as textContent.
"use strict";

const TEXT = {
  en: {
    title: "guardlink guard", guard_id: "Guard id", pin: "PIN", log_in: "Log in", jobs: "Incidents", tasks: "Tasks", checkpoint: "Checkpoint",
    scan: "Scan checkpoint QR", check_in: "Check in", code_hint: "Code on the checkpoint", tip: "Information tip", category: "Category",
    what: "What did you see?", photo: "Photo", with_location: "Send my location", send: "Send tip", prealarm: "Man-down alarm about to go out. Are you all right?",
    im_ok: "I am OK – cancel", accept: "Accept", decline: "Decline", on_scene: "On scene", resolved: "Resolved", false_alarm: "False alarm",
    done: "Done", no_offers: "No incidents for you.", no_tasks: "No tasks for you.", queued: "Saved – will send when connected",
    sent: "Sent", offline: "Offline: answers are kept and sent when the connection is back", pending: "waiting to send: ",
    wrong_login: "Wrong guard id or PIN", away: "away", until: "until", log_out: "Log out", no_camera: "No camera scanning here: type the code",
    tip_sent: "Tip saved – it goes to the command centre", photo_big: "Photo too large",
    kinds: {panic: "Panic alarm", duress: "Duress alarm", sos: "SOS", man_down: "Man down", intrusion: "Intrusion", loitering: "Loitering", smoke: "Smoke", water_leak: "Water leak"},
    tasks_kinds: {patrol: "Patrol", hazard_inspection: "Hidden-hazard inspection", information_collection: "Information collection", dispute_mediation: "Dispute mediation", anti_fraud: "Anti-fraud publicity"},
    states: {offered: "offered", accepted: "accepted", on_scene: "on scene", assigned: "accepted"},
    categories: {suspicious_person: "Suspicious person", suspicious_vehicle: "Suspicious vehicle", hazard: "Hazard", dispute: "Dispute", fraud: "Fraud", other: "Other"},
  },
  zh: {
    title: "guardlink 保安", guard_id: "保安编号", pin: "密码", log_in: "登录", jobs: "警情", tasks: "任务", checkpoint: "巡逻打卡",
    scan: "扫描打卡点二维码", check_in: "打卡", code_hint: "打卡点上的编码", tip: "信息上报", category: "类别",
    what: "您看到了什么？", photo: "照片", with_location: "发送我的位置", send: "上报", prealarm: "即将发出人员倒地报警。您还好吗？",
    im_ok: "我没事 – 取消", accept: "接受", decline: "拒绝", on_scene: "已到场", resolved: "已处置", false_alarm: "误报",
    done: "完成", no_offers: "暂无警情。", no_tasks: "暂无任务。", queued: "已保存 – 联网后发送",
    sent: "已发送", offline: "离线：回复已保存，联网后自动发送", pending: "待发送：",
    wrong_login: "编号或密码错误", away: "距离", until: "至", log_out: "退出", no_camera: "无法扫码：请输入编码",
    tip_sent: "已保存 – 将上报指挥中心", photo_big: "照片太大",
    kinds: {panic: "紧急报警", duress: "胁迫报警", sos: "求救", man_down: "人员倒地", intrusion: "入侵", loitering: "徘徊", smoke: "烟雾", water_leak: "漏水"},
    tasks_kinds: {patrol: "巡逻", hazard_inspection: "隐患排查", information_collection: "信息采集", dispute_mediation: "矛盾调解", anti_fraud: "反诈宣传"},
    states: {offered: "待接受", accepted: "已接受", on_scene: "已到场", assigned: "已接受"},
    categories: {suspicious_person: "可疑人员", suspicious_vehicle: "可疑车辆", hazard: "安全隐患", dispute: "矛盾纠纷", fraud: "诈骗", other: "其他"},
  },
};
let lang = localStorage.getItem("lang") || ((navigator.language || "en").startsWith("zh") ? "zh" : "en");
const t = (key) => TEXT[lang][key] ?? TEXT.en[key] ?? key;
const $ = (id) => document.getElementById(id);
const newId = () => (crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random().toString(16).slice(2)}`);
let token = localStorage.getItem("token");
let latest = null;
let position = null;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) { if (k === "class") node.className = v; else if (k.startsWith("on")) node.addEventListener(k.slice(2), v); else node.setAttribute(k, v); }
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child ?? "")));
  return node;
}

function toast(message) {
  const box = $("toast");
  box.textContent = message;
  box.classList.add("show");
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => box.classList.remove("show"), 2500);
}

function translate() {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  for (const node of document.querySelectorAll("[data-t]")) node.textContent = t(node.dataset.t);
  for (const node of document.querySelectorAll("[data-tp]")) node.placeholder = t(node.dataset.tp);
  $("lang").textContent = lang === "zh" ? "English" : "中文";
  const select = $("tip-category");
  const chosen = select.value;
  select.replaceChildren(...Object.entries(t("categories")).map(([value, label]) => el("option", {value}, label)));
  if (chosen) select.value = chosen;
  if (latest) render(latest);
}

// --- the queue: what the guard sent, until the edge took it -----------------------------------------------------------

const queue = () => JSON.parse(localStorage.getItem("queue") || "[]");
const saveQueue = (items) => localStorage.setItem("queue", JSON.stringify(items));

function send(path, body) {
  saveQueue([...queue(), {path, body: {id: newId(), ...body}}]);
  return flush();
}

async function flush() {
  let items = queue();
  while (items.length) {
    const item = items[0];
    let response;
    try {
      response = await api(item.path, item.body);
    } catch (error) { showNet(); return false; }
    if (response.status === 401) { logout(); return false; }
    if (response.status >= 500) { showNet(); return false; }
    if (!response.ok) toast(`${response.status}: ${(await response.json().catch(() => ({}))).detail ?? ""}`);
    items = queue().filter((other) => other.body.id !== item.body.id);
    saveQueue(items);
  }
  showNet();
  return true;
}

function showNet() {
  const waiting = queue().length;
  const box = $("net");
  box.hidden = navigator.onLine && waiting === 0;
  box.textContent = navigator.onLine ? `${t("pending")}${waiting}` : t("offline");
}

function api(path, body) {
  return fetch(path, {
    method: body === undefined ? "GET" : "POST",
    headers: {"Content-Type": "application/json", ...(token ? {Authorization: `Bearer ${token}`} : {})},
    body: body === undefined ? undefined : JSON.stringify(body),
  });
}

// --- what the guard sees ------------------------------------------------------------------------------------------------

function render(state) {
  latest = state;
  $("who").textContent = `${state.name} · ${state.site}`;
  $("prealarm").hidden = !state.prealarm;
  $("offers").replaceChildren(...(state.offers.length ? state.offers.map(offerCard) : [el("li", {class: "empty"}, t("no_offers"))]));
  $("tasks").replaceChildren(...(state.tasks.length ? state.tasks.map(taskCard) : [el("li", {class: "empty"}, t("no_tasks"))]));
  document.body.dataset.ready = "1";
}

function offerCard(offer) {
  const answer = (value) => () => send("/api/reply", {answer: value, escalation: offer.escalation}).then(() => { offer.progress = value; render(latest); });
  const buttons = offer.progress === "offered"
    ? [el("button", {class: "accept", onclick: answer("accept")}, t("accept")), el("button", {class: "decline", onclick: answer("decline")}, t("decline"))]
    : offer.progress === "accept"
      ? [el("button", {class: "accept", onclick: answer("on_scene")}, t("on_scene"))]
      : [el("button", {class: "accept", onclick: answer("resolved")}, t("resolved")), el("button", {onclick: answer("false_alarm")}, t("false_alarm"))];
  const progress = offer.progress === "accept" ? "accepted" : offer.progress;
  return el("li", {class: `card ${offer.severity}`, "data-escalation": offer.escalation},
    el("h3", {}, t("kinds")[offer.kind] ?? offer.kind, " ", el("span", {class: `badge ${progress}`}, t("states")[progress] ?? progress)),
    el("p", {class: "meta"}, [offer.zone || offer.device, `${t("away")} ${Math.round(offer.distance_m)} m`].join(" · ")),
    el("div", {class: "actions"}, ...buttons));
}

function taskCard(task) {
  const answer = (value) => () => send(`/api/tasks/${encodeURIComponent(task.id)}`, {answer: value}).then(() => { task.state = value === "accept" ? "accepted" : "gone"; render(latest); });
  const end = new Date(task.end);
  const buttons = task.state === "offered"
    ? [el("button", {class: "accept", onclick: answer("accept")}, t("accept")), el("button", {class: "decline", onclick: answer("decline")}, t("decline"))]
    : task.state === "accepted" ? [el("button", {class: "accept", onclick: answer("done")}, t("done"))] : [];
  return el("li", {class: "card task", "data-task": task.id},
    el("h3", {}, t("tasks_kinds")[task.kind] ?? task.kind, " ", el("span", {class: `badge ${task.state}`}, t("states")[task.state] ?? task.state)),
    el("p", {class: "meta"}, [task.target.name || task.target.id, `${t("until")} ${end.toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"})}`,
      task.distance_m != null ? `${t("away")} ${Math.round(task.distance_m)} m` : ""].filter(Boolean).join(" · ")),
    task.note ? el("p", {}, task.note) : "",
    el("div", {class: "actions"}, ...buttons));
}

async function refresh() {
  await flush();
  if (!token) return;
  try {
    const response = await api("/api/state");
    if (response.status === 401) return logout();
    if (response.ok) render(await response.json());
  } catch (error) { showNet(); }
}

// --- logging in and out ---------------------------------------------------------------------------------------------------

function showLogin() { $("login").hidden = false; $("main").hidden = true; $("who").textContent = ""; }
function logout() { token = null; localStorage.removeItem("token"); showLogin(); }

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const response = await api("/api/login", {guard: $("login-guard").value.trim(), pin: $("login-pin").value}).catch(() => null);
  if (!response || !response.ok) { $("login-error").textContent = t("wrong_login"); return; }
  token = (await response.json()).token;
  localStorage.setItem("token", token);
  $("login").hidden = true; $("main").hidden = false;
  refresh();
});

// --- checkpoints, tips, the pre-alarm ----------------------------------------------------------------------------------------

const where = () => (position ? {lat: position.coords.latitude, lon: position.coords.longitude} : null);

async function checkIn(code) {
  await send("/api/checkin", {code, location: where()});
  toast(queue().length ? t("queued") : t("sent"));
}

$("code-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const code = $("code").value.trim();
  if (code) checkIn(code).then(() => { $("code").value = ""; });
});

$("scan").addEventListener("click", async () => {
  if (!("BarcodeDetector" in window) || !navigator.mediaDevices) { toast(t("no_camera")); $("code").focus(); return; }
  const video = $("camera");
  let stream;
  try { stream = await navigator.mediaDevices.getUserMedia({video: {facingMode: "environment"}}); } catch (error) { toast(t("no_camera")); return; }
  video.srcObject = stream; video.hidden = false; await video.play();
  const detector = new BarcodeDetector({formats: ["qr_code"]});
  const stop = () => { stream.getTracks().forEach((track) => track.stop()); video.hidden = true; };
  const started = Date.now();
  const look = async () => {
    const codes = await detector.detect(video).catch(() => []);
    if (codes.length) { stop(); checkIn(codes[0].rawValue); return; }
    if (Date.now() - started > 30000) { stop(); return; }
    requestAnimationFrame(look);
  };
  look();
});

function shrink(file) {  // a phone photo, scaled to at most 1280 px and re-encoded as JPEG (a few hundred KiB)
  return new Promise((resolve, reject) => {
    const image = new Image();
    image.onload = () => {
      const scale = Math.min(1, 1280 / Math.max(image.width, image.height));
      const canvas = el("canvas", {width: Math.round(image.width * scale), height: Math.round(image.height * scale)});
      canvas.getContext("2d").drawImage(image, 0, 0, canvas.width, canvas.height);
      URL.revokeObjectURL(image.src);
      resolve(canvas.toDataURL("image/jpeg", 0.8));
    };
    image.onerror = reject;
    image.src = URL.createObjectURL(file);
  });
}

$("tip-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const file = $("tip-photo").files[0];
  const photo = file ? await shrink(file).catch(() => null) : null;
  if (photo && photo.length > 2_700_000) { toast(t("photo_big")); return; }
  await send("/api/tips", {category: $("tip-category").value, text: $("tip-text").value, photo, location: $("tip-where").checked ? where() : null});
  $("tip-form").reset();
  toast(t("tip_sent"));
});

$("cancel-prealarm").addEventListener("click", () => send("/api/reply", {answer: "cancel_prealarm"}).then(() => { $("prealarm").hidden = true; }));
$("lang").addEventListener("click", () => { lang = lang === "zh" ? "en" : "zh"; localStorage.setItem("lang", lang); translate(); });
window.addEventListener("online", refresh);
window.addEventListener("offline", showNet);

translate();
if (navigator.geolocation) navigator.geolocation.watchPosition((p) => { position = p; }, () => {}, {enableHighAccuracy: true, maximumAge: 30000});
if ("serviceWorker" in navigator) navigator.serviceWorker.register("sw.js").catch(() => {});
if (token) { $("main").hidden = false; refresh(); } else showLogin();
setInterval(refresh, 2000);
