// The agent sidebar: one call's transcript, stop sign, prompt cards and risk.
//
// /sidebar?token=T&call_id=ID  follows that call over /ws/calls/ID.
// /sidebar?token=T             watches /ws/board and follows the newest live call,
//                              switching when a newer one starts.
//
// The call socket replays the whole call on every (re)connect, so the view is
// rebuilt from scratch on each open: state lives in `view`, reset by resetView().

import {
  connect, duration, el, humanise, param, riskBand, showConnection, signalTags,
} from "/static/common.js";

const MAX_CARDS = 3;
const CARD_LIFETIME = 60; // seconds of call audio a deescalate card stays up

const $ = (id) => document.getElementById(id);
const transcript = $("transcript");
const stopSign = $("stop-sign");
const prompts = $("prompts");
const notice = $("notice");
const jumpLatest = $("jump-latest");

// ---- state -----------------------------------------------------------------

let view = freshView();
let followedId = null;  // call id whose socket is open
let callSocket = null;  // connect() handle for /ws/calls/{followedId}
// Connection states of the two sockets and a fatal error, for #connection-status and body[data-state].
const conn = { board: null, call: null, error: null };
// Cards the agent dismissed stay dismissed across reconnects ("callId:promptId").
const dismissed = new Set();

function freshView() {
  return {
    call: null,          // last "call" event
    at: 0,               // latest `at` seen (seconds of call audio)
    lines: new Map(),    // utterance id -> .line element
    cards: new Map(),    // prompt id -> deescalate prompt event (+ active)
    stop: null,          // active stop_sign prompt event
  };
}

function resetView() {
  view = freshView();
  transcript.replaceChildren();
  stick = true;
  jumpLatest.hidden = true;
  renderHeader();
  renderRisk(0, []);
  renderStop();
  renderCards();
}

// ---- events ----------------------------------------------------------------

function apply(msg) {
  if (typeof msg.at === "number" && msg.at > view.at) {
    view.at = msg.at;
    expireCards();
    if (view.call) $("call-clock").textContent = duration(view.at);
  }
  switch (msg.type) {
    case "call": return onCall(msg);
    case "transcript": return onTranscript(msg);
    case "signal": return onSignal(msg);
    case "prompt": return onPrompt(msg);
    case "prompt_cleared": return onPromptCleared(msg);
    case "risk": return renderRisk(msg.score, msg.drivers);
  }
}

function onCall(msg) {
  view.call = msg;
  if (msg.state === "ended") {
    // The call is over: nothing to act on any more, so the screen goes quiet.
    view.stop = null;
    view.cards.clear();
    renderStop();
    renderCards();
  }
  if (typeof msg.risk === "number") renderRisk(msg.risk, null);
  renderHeader();
  updateState();
}

function onTranscript(msg) {
  const text = String(msg.text ?? "").trim();
  let line = view.lines.get(msg.id);
  if (!text) {
    // A final with empty text (or an emptied interim) removes the line.
    if (line) line.remove();
    view.lines.delete(msg.id);
    return;
  }
  const follow = stick;
  if (!line) {
    line = el("div", { class: "line", "data-id": msg.id },
      el("span", { class: "speaker" }),
      el("span", { class: "text" }));
    view.lines.set(msg.id, line);
  }
  const speaker = msg.speaker || "mixed";
  line.dataset.speaker = speaker;
  line.dataset.final = msg.final ? "true" : "false";
  line.classList.toggle("interim", !msg.final);
  line.querySelector(".speaker").textContent =
    speaker === "agent" ? "Agent" : speaker === "customer" ? "Customer" : "Both";
  line.querySelector(".text").textContent = text;
  // Optional subtle tint from a final's sentiment.
  const s = msg.final && typeof msg.sentiment === "number" ? msg.sentiment : 0;
  if (s <= -0.4) line.dataset.sentiment = "negative";
  else if (s >= 0.4) line.dataset.sentiment = "positive";
  else delete line.dataset.sentiment;
  place(line, Number(msg.start) || 0, 0);
  if (follow) scrollToEnd();
}

function onSignal(msg) {
  const follow = stick;
  const node = el("div", {
    class: "signal", "data-label": msg.label, "data-speaker": msg.speaker,
    title: typeof msg.score === "number" ? `score ${msg.score.toFixed(2)}` : null,
  },
  el("span", { class: "signal-label", text: humanise(msg.label) }),
  msg.evidence ? el("q", { class: "evidence", text: msg.evidence }) : null);
  // A signal sits after the words it is about: keyed by its end, after lines with the same key.
  place(node, Number(msg.end ?? msg.start) || 0, 1);
  if (follow) scrollToEnd();
}

function onPrompt(msg) {
  if (view.call?.state === "ended") return; // no advice once the call is over
  if (msg.kind === "stop_sign") {
    view.stop = msg; // one stop sign at a time: the newer one replaces it
    renderStop();
    return;
  }
  if (dismissed.has(`${followedId}:${msg.id}`)) return;
  view.cards.set(msg.id, msg);
  renderCards();
}

function onPromptCleared(msg) {
  if (view.stop && view.stop.id === msg.id) {
    view.stop = null;
    renderStop();
  }
  if (view.cards.delete(msg.id)) renderCards();
}

function expireCards() {
  let changed = false;
  for (const [id, card] of view.cards) {
    if (view.at - (Number(card.at) || 0) >= CARD_LIFETIME) {
      view.cards.delete(id);
      changed = true;
    }
  }
  if (changed) renderCards();
}

// ---- rendering -------------------------------------------------------------

/** Insert `node` into the transcript ordered by `key` (ties: lines before signals, then arrival). */
function place(node, key, rank) {
  node.dataset.key = key;
  node.dataset.rank = rank;
  const before = (other) => {
    const k = Number(other.dataset.key);
    return k < key || (k === key && Number(other.dataset.rank) <= rank);
  };
  if (node.parentNode === transcript) {
    // Already in place? (the common case: an interim replaced by its final)
    const prev = node.previousElementSibling;
    const next = node.nextElementSibling;
    if ((!prev || before(prev)) && (!next || !before(next))) return;
    node.remove();
  }
  // Walk back from the end: new words almost always go last.
  let after = transcript.lastElementChild;
  while (after && !before(after)) after = after.previousElementSibling;
  if (after) after.after(node);
  else transcript.prepend(node);
}

function renderHeader() {
  const call = view.call;
  const badge = $("call-state");
  badge.dataset.state = call?.state || "none";
  badge.textContent = call ? (call.state === "live" ? "Live" : call.state === "ended" ? "Ended" : call.state) : "No call";
  $("agent-id").textContent = call?.agent_id ? `Agent ${call.agent_id}` : "";
  $("call-clock").textContent = call ? duration(view.at) : "";
  document.title = call ? `Coach · ${call.agent_id || "call"} · ${call.state}` : "Coach · call sidebar";
}

function renderRisk(score, drivers) {
  const value = Math.max(0, Math.min(100, Math.round(Number(score) || 0)));
  const band = riskBand(value);
  const risk = $("risk");
  risk.className = `risk-meter risk-${band}`;
  risk.dataset.band = band;
  risk.dataset.score = value;
  risk.querySelector(".risk-fill").style.width = `${value}%`;
  risk.querySelector("[role=meter]").setAttribute("aria-valuenow", value);
  $("risk-score").textContent = value;
  if (drivers) $("risk-drivers").textContent = drivers.map(humanise).join(" · ");
}

function renderStop() {
  const p = view.stop;
  stopSign.hidden = !p;
  if (!p) {
    delete stopSign.dataset.promptId;
    return;
  }
  stopSign.dataset.promptId = p.id;
  $("stop-title").textContent = p.title || "Stop";
  $("stop-text").textContent = p.text || "";
}

function renderCards() {
  // Highest priority first, then newest first.
  const shown = [...view.cards.values()]
    .sort((a, b) => (b.priority || 0) - (a.priority || 0) || (b.at || 0) - (a.at || 0) || b.id - a.id)
    .slice(0, MAX_CARDS);
  prompts.replaceChildren(...shown.map(card));
}

function card(p) {
  const dismiss = el("button", {
    class: "dismiss", type: "button", "aria-label": `Dismiss: ${p.title || "prompt"}`, title: "Dismiss", text: "×",
  });
  dismiss.addEventListener("click", () => {
    dismissed.add(`${followedId}:${p.id}`);
    view.cards.delete(p.id);
    renderCards();
  });
  return el("article", {
    class: "prompt-card", "data-prompt-id": p.id, "data-kind": p.kind, "data-priority": p.priority,
  },
  el("div", { class: "prompt-head" }, el("h3", { class: "prompt-title", text: p.title || "" }), dismiss),
  p.text ? el("p", { class: "prompt-text", text: p.text }) : null,
  p.signals?.length ? signalTags(p.signals) : null);
}

// ---- auto-scroll -------------------------------------------------------------

// Follow the newest words unless the user scrolled up to read something.
let stick = true;
transcript.addEventListener("scroll", () => {
  stick = transcript.scrollHeight - transcript.scrollTop - transcript.clientHeight < 40;
  jumpLatest.hidden = stick;
});
jumpLatest.addEventListener("click", () => {
  stick = true;
  scrollToEnd();
});
function scrollToEnd() {
  transcript.scrollTop = transcript.scrollHeight;
}
// The transcript shrinks when a stop sign or card appears: keep the newest words in view.
new ResizeObserver(() => { if (stick) scrollToEnd(); }).observe(transcript);

// ---- connection state --------------------------------------------------------

function updateState() {
  const s = conn.call || conn.board;
  let state;
  if (conn.error) state = "error";
  else if (!followedId) state = "connecting"; // waiting for a call counts as connecting
  else if (view.call?.state === "ended") state = "ended";
  else if (conn.call?.state === "live" && view.call?.state === "live") state = "live";
  else state = "connecting";
  document.body.dataset.state = state;

  if (conn.error) showConnection("error", conn.error);
  else if (s) showConnection(s.state, s.text);

  if (conn.error) {
    notice.textContent = conn.error;
    notice.dataset.kind = "error";
    notice.hidden = false;
  } else if (!followedId) {
    notice.textContent = "Waiting for a call…";
    notice.dataset.kind = "waiting";
    notice.hidden = false;
  } else {
    notice.hidden = true;
  }
}

function follow(callId) {
  if (callSocket) callSocket.close();
  followedId = callId;
  conn.call = null;
  conn.error = null;
  resetView();
  callSocket = connect(`/ws/calls/${encodeURIComponent(callId)}`, {
    onOpen: resetView, // the replay restarts: rebuild from nothing
    onMessage: (msg) => {
      if (msg.call_id && msg.call_id !== callId) return;
      apply(msg);
    },
    onStatus: (state, text) => {
      if (state === "error") conn.error = text;
      if (state === "closed") text = view.call?.state === "ended" ? "call ended" : text;
      conn.call = { state, text };
      updateState();
    },
    // An ended call has nothing more to send: don't reconnect once it is over.
    shouldReconnect: () => view.call?.state !== "ended",
  });
  updateState();
}

/** Without call_id: follow the newest live call on the board. */
function watchBoard() {
  const calls = new Map();
  connect("/ws/board", {
    onOpen: () => calls.clear(),
    onMessage: (msg) => {
      if (msg.type !== "call" || !msg.call_id) return;
      calls.set(msg.call_id, msg);
      let newest = null;
      for (const c of calls.values()) {
        if (c.state === "live" && (!newest || (c.started_at || 0) >= (newest.started_at || 0))) newest = c;
      }
      // Switch only to a live call; an ended call stays on screen until the next one starts.
      if (newest && newest.call_id !== followedId) follow(newest.call_id);
    },
    onStatus: (state, text) => {
      // A fatal board error only matters while no call is followed.
      if (state === "error" && !followedId) conn.error = text;
      conn.board = { state, text };
      updateState();
    },
  });
}

// ---- start -------------------------------------------------------------------

const wanted = param("call_id");
if (wanted) follow(wanted);
else {
  resetView();
  watchBoard();
  updateState();
}
