// The team lead's board: every known call, live ones ranked by risk.
//
// /board?token=T reads /ws/board: one {"type":"call"} summary per call on connect,
// then a new summary whenever a call starts, ends or changes. Rows are kept in
// ranking order in the DOM (#calls > .call-row) after every update.

import {
  connect, duration, el, humanise, riskBand, showConnection, shortId, sidebarUrl, signalTags,
} from "/static/common.js";

const tbody = document.getElementById("calls");
const notice = document.getElementById("notice");
const empty = document.getElementById("empty");

/** call_id -> { call: last summary, row: <tr> } */
const calls = new Map();
let skew = 0; // server clock minus ours, in seconds (from each message's `ts`)

/** Unix seconds from a number or an ISO date string. */
function seconds(v) {
  if (typeof v === "number") return v;
  const ms = Date.parse(v);
  return Number.isNaN(ms) ? null : ms / 1000;
}

function onCall(msg) {
  if (typeof msg.ts === "number") skew = msg.ts - Date.now() / 1000;
  let entry = calls.get(msg.call_id);
  if (!entry) {
    entry = { call: msg, row: newRow(msg.call_id) };
    calls.set(msg.call_id, entry);
  }
  entry.call = msg;
  fillRow(entry);
  rank();
}

function newRow(callId) {
  const link = el("a", {
    class: "open-sidebar", href: sidebarUrl(callId), target: "_blank", rel: "noopener",
    title: `Open the sidebar of call ${callId}`, text: shortId(callId),
  });
  const row = el("tr", { class: "call-row", "data-call-id": callId },
    el("td", { class: "col-risk" },
      el("span", { class: "risk-score" }),
      el("span", { class: "risk-bar", "aria-hidden": "true" }, el("span", { class: "risk-fill" }))),
    el("td", { class: "col-agent" }),
    el("td", { class: "col-call" }, link),
    el("td", { class: "col-state" }),
    el("td", { class: "col-duration" }),
    el("td", { class: "col-signals" }),
    el("td", { class: "col-prompt" }));
  // The whole row opens the sidebar; the link does it on its own (and for the keyboard).
  row.addEventListener("click", (ev) => {
    if (ev.target.closest("a")) return;
    window.open(sidebarUrl(callId), "_blank", "noopener");
  });
  return row;
}

function fillRow({ call, row }) {
  const risk = Math.max(0, Math.min(100, Math.round(Number(call.risk) || 0)));
  const band = riskBand(risk);
  const ended = call.state !== "live";
  row.className = `call-row risk-${band}${ended ? " ended" : ""}`;
  row.dataset.risk = risk;
  row.dataset.state = call.state || "";
  const cell = (name) => row.querySelector(`.col-${name}`);
  cell("risk").querySelector(".risk-score").textContent = risk;
  cell("risk").querySelector(".risk-fill").style.width = `${risk}%`;
  cell("agent").textContent = call.agent_id || "—";
  cell("state").textContent = call.state === "live" ? "Live" : call.state === "ended" ? "Ended" : call.state || "";
  cell("signals").replaceChildren(signalTags(call.signals));
  const prompt = cell("prompt");
  prompt.textContent = call.prompt || "";
  prompt.title = call.prompt || "";
  cell("duration").textContent = duration(elapsed(call));
}

/** Seconds since the call started: ticking while live; fixed once ended. */
function elapsed(call) {
  const started = seconds(call.started_at);
  if (call.state === "live" && started !== null) return Date.now() / 1000 + skew - started;
  if (typeof call.at === "number") return call.at; // seconds of call audio
  if (started !== null && typeof call.ts === "number") return call.ts - started;
  return 0;
}

/** Live calls by risk (ties: newest first), then ended calls, newest first. */
function compare(a, b) {
  const liveA = a.state === "live", liveB = b.state === "live";
  if (liveA !== liveB) return liveA ? -1 : 1;
  if (liveA) {
    const byRisk = (Number(b.risk) || 0) - (Number(a.risk) || 0);
    if (byRisk) return byRisk;
  }
  return (seconds(b.started_at) || 0) - (seconds(a.started_at) || 0);
}

function rank() {
  const ordered = [...calls.values()].sort((a, b) => compare(a.call, b.call));
  // Move only the rows that are out of place (keeps hover/focus stable).
  ordered.forEach(({ row }, i) => {
    if (tbody.children[i] !== row) tbody.insertBefore(row, tbody.children[i] || null);
  });
  const live = ordered.filter(({ call }) => call.state === "live");
  const high = live.filter(({ call }) => riskBand(call.risk) === "high");
  document.getElementById("count-live").textContent = live.length;
  document.getElementById("count-high").textContent = high.length;
  document.querySelector(".count-high").dataset.some = high.length > 0;
  empty.hidden = calls.size > 0;
}

function tick() {
  for (const entry of calls.values()) {
    if (entry.call.state === "live") {
      entry.row.querySelector(".col-duration").textContent = duration(elapsed(entry.call));
    }
  }
}

connect("/ws/board", {
  // The server re-sends every call on connect: start from an empty board.
  onOpen: () => {
    calls.clear();
    tbody.replaceChildren();
    rank();
  },
  onMessage: (msg) => {
    if (msg.type === "call" && msg.call_id) onCall(msg);
  },
  onStatus: (state, text) => {
    document.body.dataset.state = state === "live" || state === "error" ? state : "connecting";
    showConnection(state, text);
    notice.hidden = state !== "error";
    if (state === "error") notice.textContent = text;
  },
});
setInterval(tick, 1000);
