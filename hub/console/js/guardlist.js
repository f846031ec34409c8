// The guards of an incident as one compact line each: name, state, distance and walking time.

import { h } from "./dom.js";
import { distance, duration, label, t } from "./i18n.js";

const ACTIVE = new Set(["offered", "assigned", "on_scene", "done"]);

/** The assignments still in play (declined, timed-out and withdrawn offers are history: the incident page has them). */
export function activeAssignments(assignments) {
  return (assignments || []).filter((a) => ACTIVE.has(a.state));
}

export function assignmentLine(a) {
  return h("span", { class: `guard-chip state-${a.state}` },
    h("b", {}, a.name), " ", h("span", { class: "pill small" }, label("assignment", a.state)),
    " ", distance(a.distance_m), " · ", t("board.eta", { eta: duration(a.eta_s) }));
}
