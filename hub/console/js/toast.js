// Short messages in the corner: a command sent, refused, or sent by someone else.

import { h } from "./dom.js";

export function toast(text, kind = "info") {
  const box = h("div", { class: `toast ${kind}` }, text);
  document.getElementById("toasts").append(box);
  setTimeout(() => box.remove(), 6000);
}
