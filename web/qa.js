// The QA replay page: stored calls, filtered; one call's recording with its flags on a timeline,
// why each flag fired, the transcript in step with the audio, and QA's verdicts.
//
// /qa?token=T              the list of calls (flagged ones by default)
// /qa?token=T&call_id=ID   the same, with that call open
//
// Everything comes from the REST API with `Authorization: Bearer T`. The recording is streamed by the
// player itself (HTTP Range requests) from /api/calls/ID/audio?token=T: an <audio src> sends no header.
// Everything that comes from the server is written with textContent, never innerHTML.

import { authHeaders, duration, el, humanise, param, riskBand, shortId, signalTags } from "/static/common.js";

const PAGE = 100;          // calls per request
const LEAD_IN = 3;         // a jump starts this many seconds before the flagged speech
const PROMPT_WINDOW = 5;   // a prompt this soon after a flag (same label) was shown because of it

const $ = (id) => document.getElementById(id);
const notice = $("notice");
const list = $("calls");
const form = $("filters");
const view = $("call");
const player = $("player");
const audioStatus = $("audio-status");
const timeline = $("timeline");
const flagsList = $("flags");
const transcript = $("transcript");

const when = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
const whenLong = new Intl.DateTimeFormat(undefined, { dateStyle: "full", timeStyle: "medium" });

// ---- state -----------------------------------------------------------------

const listing = { gen: 0, offset: 0, pending: null }; // pending: the request on its way
let current = null;        // the open call: { id, call, flags, lines, total, gen }
let callGen = 0;           // bumped whenever another call is opened (late answers are dropped)
let currentLine = null;    // the highlighted transcript line (its entry in current.lines)
let pendingSeek = null;    // a jump asked for before the recording was ready: [seconds, play]

// ---- the API ---------------------------------------------------------------

class ApiError extends Error {
  constructor(status, detail) {
    super(detail || `status ${status}`);
    this.status = status;
    this.detail = detail;
  }
}

/** fetch() with the page's token; a non-2xx answer throws ApiError with the server's detail. */
async function api(path, options = {}) {
  let resp;
  try {
    resp = await fetch(path, { ...options, headers: { ...authHeaders(), ...(options.headers || {}) } });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, "Could not reach the server");
  }
  if (!resp.ok) {
    let detail = "";
    try {
      const body = await resp.json();
      detail = typeof body.detail === "string" ? body.detail
        : Array.isArray(body.detail) ? body.detail.map((d) => d.msg).join("; ") : "";
    } catch {
      // not JSON
    }
    throw new ApiError(resp.status, detail);
  }
  return resp;
}

/** What to tell the user about a failed request. `what` names the thing asked for. */
function explain(err, what) {
  switch (err.status) {
    case 0: return "Could not reach the server. Check the connection and reload.";
    case 401: return "This link's token is not valid";
    case 403: return what === "call" ? "You can only see your own calls" : "This token cannot read calls";
    case 404: return what === "call" ? "No such call" : "Not found";
    case 422: return `The server refused the request: ${err.detail}`;
    default: return `The server could not answer (${err.status}${err.detail ? `: ${err.detail}` : ""})`;
  }
}

// What the page is doing, for #notice and body[data-state]: an error of the list or of the open
// call is shown (the call's first); otherwise the page is "loading" until both have answered.
const pageStatus = { listLoading: true, listError: null, callLoading: false, callError: null };

function showStatus(changes = {}) {
  Object.assign(pageStatus, changes);
  const error = pageStatus.callError || pageStatus.listError;
  notice.hidden = !error;
  notice.textContent = error || "";
  if (error) notice.dataset.kind = "error";
  else delete notice.dataset.kind;
  document.body.dataset.state = error ? "error" : pageStatus.listLoading || pageStatus.callLoading ? "loading" : "ready";
}

// ---- URLs ------------------------------------------------------------------

/** This page's URL with some query parameters changed ("" or null removes one). */
function pageUrl(changes) {
  const q = new URLSearchParams(location.search);
  for (const [key, value] of Object.entries(changes)) {
    if (value === "" || value === null || value === undefined) q.delete(key);
    else q.set(key, value);
  }
  const s = q.toString();
  return s ? `/qa?${s}` : "/qa";
}

// ---- the list of calls -------------------------------------------------------

const FILTERS = {  // page URL parameter -> form field
  flagged: "filter-flagged", label: "filter-label", agent: "filter-agent",
  since: "filter-since", until: "filter-until", min_risk: "filter-min-risk",
};

/** Fill the filter form from the page's URL (flagged stays on unless the URL says flagged=0). */
function filtersFromUrl() {
  $("filter-flagged").checked = param("flagged") !== "0";
  for (const key of ["label", "agent", "since", "until", "min_risk"]) $(FILTERS[key]).value = param(key);
}

/** The filters as page URL parameters. */
function filterParams() {
  return {
    flagged: $("filter-flagged").checked ? "" : "0",
    label: $("filter-label").value.trim(),
    agent: $("filter-agent").value.trim(),
    since: $("filter-since").value,
    until: $("filter-until").value,
    min_risk: $("filter-min-risk").value.trim(),
  };
}

/** Local midnight of a "YYYY-MM-DD" date, plus `days`, as an ISO time the API reads. */
function localMidnight(date, days = 0) {
  const [y, m, d] = date.split("-").map(Number);
  return new Date(y, m - 1, d + days).toISOString();
}

/** The filters as /api/calls parameters. "To" includes that whole day. */
function apiQuery() {
  const f = filterParams();
  const q = new URLSearchParams();
  if (!f.flagged) q.set("flagged", "true");
  if (f.label) q.set("label", f.label);
  if (f.agent) q.set("agent_id", f.agent);
  if (f.since) q.set("since", localMidnight(f.since));
  if (f.until) q.set("until", localMidnight(f.until, 1));
  if (f.min_risk) q.set("min_risk", f.min_risk);
  return q;
}

/** (Re)load the list from the first page, or the next page when `more`. */
async function loadCalls(more = false) {
  const q = apiQuery();
  const key = `${more ? listing.offset : 0}?${q}`;
  if (key === listing.pending) return; // the same request is on its way (Enter fires submit and change)
  listing.pending = key;
  const gen = ++listing.gen;
  if (!more) listing.offset = 0;
  q.set("limit", PAGE);
  q.set("offset", listing.offset);
  $("more").disabled = true;
  showStatus({ listLoading: true });
  let calls;
  try {
    calls = await (await api(`/api/calls?${q}`)).json();
  } catch (err) {
    if (gen !== listing.gen) return;
    listing.pending = null;
    $("more").disabled = false;
    showStatus({ listLoading: false, listError: explain(err, "calls") });
    return;
  }
  if (gen !== listing.gen) return;
  listing.pending = null;
  if (!more) list.replaceChildren();
  for (const call of calls) list.append(callRow(call));
  listing.offset += calls.length;
  const count = list.children.length;
  $("calls-count").textContent = `${count}${calls.length === PAGE ? "+" : ""} call${count === 1 ? "" : "s"}`;
  $("empty").hidden = count > 0;
  $("more").hidden = calls.length < PAGE;
  $("more").disabled = false;
  markSelected();
  showStatus({ listLoading: false, listError: null });
}

function callRow(call) {
  const risk = Math.round(Number(call.max_risk) || 0);
  const started = new Date(call.started_at * 1000);
  const link = el("a", { class: "call-link", href: pageUrl({ call_id: call.call_id }), title: `Call ${call.call_id}` },
    el("span", { class: "row-risk", title: "Highest risk in the call", text: risk }),
    el("span", { class: "row-main" },
      el("span", { class: "row-top" },
        el("time", { class: "col-when", datetime: started.toISOString(), title: whenLong.format(started), text: when.format(started) }),
        el("span", { class: "col-agent", text: call.agent_id || "—" }),
        call.state !== "ended" ? el("span", { class: "badge", "data-state": call.state, text: call.state }) : null,
        el("span", { class: "col-duration", title: "Length", text: duration(call.duration) })),
      call.labels?.length ? signalTags(call.labels) : el("span", { class: "no-labels", text: "no flags" })));
  const row = el("li", {
    class: `call-row risk-${riskBand(risk)}`, "data-call-id": call.call_id, "data-max-risk": risk, "data-state": call.state,
  }, link);
  link.addEventListener("click", (ev) => {
    if (ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return; // new tab etc.
    ev.preventDefault();
    openCall(call.call_id, true);
  });
  return row;
}

function markSelected() {
  for (const row of list.children) {
    const on = current !== null && row.dataset.callId === current.id;
    row.classList.toggle("selected", on);
    const link = row.querySelector(".call-link");
    if (on) link.setAttribute("aria-current", "true");
    else link.removeAttribute("aria-current");
  }
}

// ---- one call ----------------------------------------------------------------

async function openCall(id, push) {
  if (push) history.pushState({ call_id: id }, "", pageUrl({ call_id: id }));
  const gen = ++callGen;
  stopAudio();
  current = { id, gen };
  markSelected();
  showStatus({ callLoading: true, callError: null });
  view.setAttribute("aria-busy", "true");
  let call;
  try {
    call = await (await api(`/api/calls/${encodeURIComponent(id)}`)).json();
  } catch (err) {
    if (gen !== callGen) return;
    view.hidden = true;
    view.removeAttribute("data-call-id");
    view.removeAttribute("aria-busy");
    $("pick").hidden = false;
    showStatus({ callLoading: false, callError: explain(err, "call") });
    return;
  }
  if (gen !== callGen) return;
  current = { id, gen, call, ...analyse(call) };
  renderCall();
  view.removeAttribute("aria-busy");
  showStatus({ callLoading: false, callError: null });
  loadAudio(gen);
}

function closeCall() {
  callGen++;
  stopAudio();
  current = null;
  view.hidden = true;
  view.removeAttribute("data-call-id");
  $("pick").hidden = false;
  markSelected();
  document.title = "Coach · call review";
  showStatus({ callLoading: false, callError: null });
}

/** The call's flags (each with the prompt it caused and its reviews) and its final transcript lines. */
function analyse(call) {
  const events = call.events || [];
  const finals = new Map(); // utterance id -> the latest final
  for (const e of events) {
    if (e.type !== "transcript" || e.final !== true) continue;
    const key = e.id ?? `seq-${e.seq}`;
    if (String(e.text ?? "").trim()) finals.set(key, e);
    else finals.delete(key); // an empty final withdraws the utterance
  }
  const lines = [...finals.values()]
    .map((e) => ({ event: e, start: Number(e.start) || 0, end: Number(e.end) || 0, speaker: e.speaker, node: null }))
    .sort((a, b) => a.start - b.start || a.event.seq - b.event.seq);
  const prompts = events.filter((e) => e.type === "prompt");
  const reviews = call.reviews || [];
  const flags = events.filter((e) => e.type === "signal").map((signal) => ({
    signal,
    start: Number(signal.start ?? signal.at) || 0,
    end: Number(signal.end ?? signal.start ?? signal.at) || 0,
    // the first prompt for this label at or after the flag, within PROMPT_WINDOW (events are in order)
    prompt: prompts.find((p) => (p.signals || []).includes(signal.label) && p.at >= signal.at - 1e-6
      && p.at <= signal.at + PROMPT_WINDOW) || null,
    reviews: reviews.filter((r) => r.seq === signal.seq).sort((a, b) => a.reviewed_at - b.reviewed_at),
    nodes: [],
  }));
  const lastEnd = Math.max(0, ...lines.map((l) => l.end), ...flags.map((f) => f.end), ...events.map((e) => Number(e.at) || 0));
  return { lines, flags, total: Math.max(Number(call.duration) || 0, lastEnd) || 1 };
}

function renderCall() {
  const { call, flags, lines } = current;
  view.hidden = false;
  view.dataset.callId = call.call_id;
  $("pick").hidden = true;
  document.title = `Coach · call ${call.call_id}`;

  $("call-id").textContent = shortId(call.call_id);
  $("call-id").title = call.call_id;
  const badge = $("call-state");
  badge.dataset.state = call.state;
  badge.textContent = call.state === "ended" ? "Ended" : call.state === "live" ? "Live" : humanise(call.state);
  $("call-agent").textContent = call.agent_id || "—";
  const started = new Date(call.started_at * 1000);
  $("call-started").textContent = when.format(started);
  $("call-started").title = whenLong.format(started);
  $("call-duration").textContent = duration(call.duration);
  const risk = Math.round(Number(call.max_risk) || 0);
  $("call-risk").className = `risk-${riskBand(risk)}`;
  $("call-risk").querySelector(".risk-score").textContent = risk;
  $("call-flag-count").textContent = flags.length;

  renderTranscript(lines, flags);
  renderFlags(flags);
  renderTimeline();
  currentLine = null;
  sync();
  $("flags").scrollTop = 0;
  transcript.scrollTop = 0;
}

// ---- the recording -------------------------------------------------------------

function stopAudio() {
  pendingSeek = null;
  player.pause();
  player.removeAttribute("data-ready");
  player.removeAttribute("src");
  player.load();
  audioStatus.hidden = true;
}

function audioMessage(text, kind = "info") {
  audioStatus.textContent = text;
  audioStatus.dataset.kind = kind;
  audioStatus.hidden = false;
}

async function loadAudio(gen) {
  const { call } = current;
  if (call.state === "live") {
    audioMessage("This call is still live: its recording can be played once it ends.");
    return;
  }
  if (!call.has_audio) {
    audioMessage("No recording was kept for this call.");
    return;
  }
  audioMessage("Loading the recording…");
  // streamed with HTTP Range requests (the player fetches what it plays and seeks without the whole
  // file); an <audio src> cannot send a header, so the token goes in the query, as for the websockets
  const token = param("token");
  const url = `/api/calls/${encodeURIComponent(call.call_id)}/audio` + (token ? `?token=${encodeURIComponent(token)}` : "");
  player.addEventListener("loadedmetadata", () => {
    if (gen !== callGen) return;
    audioStatus.hidden = true;
    if (Number.isFinite(player.duration) && player.duration > current.total) {
      current.total = player.duration;
      renderTimeline();
    }
    player.dataset.ready = "true";
    sync();
    if (pendingSeek) seek(...pendingSeek);
  }, { once: true });
  player.src = url;
}

player.addEventListener("error", () => {
  if (!player.getAttribute("src")) return; // emptied on purpose
  audioMessage("This browser cannot play the recording (FLAC).", "error");
});

/** Go to `seconds` and play from there (playing may be refused; the seek still happens). */
function seek(seconds, play = true) {
  const t = Math.max(0, seconds);
  if (player.dataset.ready !== "true") {
    pendingSeek = [t, play]; // done once the recording is ready
    return;
  }
  pendingSeek = null;
  player.currentTime = t;
  sync();
  if (play) player.play().catch(() => {}); // autoplay may be refused: the seek is what matters
}

function jumpTo(flag) {
  seek(flag.start - LEAD_IN);
}

// ---- timeline ------------------------------------------------------------------

const pct = (seconds) => `${Math.min(100, Math.max(0, (seconds / current.total) * 100)).toFixed(3)}%`;

function renderTimeline() {
  const { lines, flags, total } = current;
  for (const lane of timeline.querySelectorAll(".timeline-lane")) lane.replaceChildren();
  const lane = (speaker) => timeline.querySelector(`.timeline-lane[data-speaker="${speaker === "agent" ? "agent" : "customer"}"]`);
  for (const line of lines) {
    const seg = el("span", { class: "seg", "data-speaker": line.speaker, title: `${speakerName(line.speaker)} ${clock(line.start)}` });
    seg.style.left = pct(line.start);
    seg.style.width = pct(Math.max(line.end - line.start, total / 400));
    if (line.speaker === "mixed") {
      lane("agent").append(seg);
      lane("customer").append(seg.cloneNode());
    } else {
      lane(line.speaker).append(seg);
    }
  }
  const marks = timeline.querySelector(".timeline-marks");
  marks.replaceChildren();
  for (const flag of flags) {
    const mark = el("button", {
      type: "button", class: "flag-mark", "data-seq": flag.signal.seq, "data-label": flag.signal.label,
      title: `${humanise(flag.signal.label)} (${speakerName(flag.signal.speaker).toLowerCase()}) at ${clock(flag.start)}`,
      "aria-label": `Play from ${clock(Math.max(0, flag.start - LEAD_IN))}: ${humanise(flag.signal.label)} at ${clock(flag.start)}`,
    });
    mark.style.left = pct(flag.start);
    mark.addEventListener("click", () => {
      jumpTo(flag);
      revealFlag(flag);
    });
    marks.append(mark);
    flag.nodes = flag.nodes.filter((n) => !n.classList.contains("flag-mark")).concat(mark);
  }
  $("timeline-end").textContent = duration(total);
}

// Clicking the track seeks there.
timeline.querySelector(".timeline-track").addEventListener("click", (ev) => {
  if (!current) return;
  const box = ev.currentTarget.getBoundingClientRect();
  seek(((ev.clientX - box.left) / box.width) * current.total, false);
});

/** The flag's entry, scrolled into view and highlighted for a moment. */
function revealFlag(flag) {
  const item = flag.nodes.find((n) => n.classList.contains("flag"));
  if (!item) return;
  scrollWithin(flagsList.closest(".qa-pane"), item);
  item.classList.remove("pulse");
  void item.offsetWidth; // restart the animation
  item.classList.add("pulse");
}

// ---- flags -----------------------------------------------------------------------

function renderFlags(flags) {
  flagsList.replaceChildren();
  $("no-flags").hidden = flags.length > 0;
  for (const flag of flags) flagsList.append(flagItem(flag));
}

function flagItem(flag) {
  const { signal, prompt } = flag;
  const jump = el("button", {
    type: "button", class: "jump",
    title: `Play from ${clock(Math.max(0, flag.start - LEAD_IN))}, ${LEAD_IN} s before the flagged words`,
    text: `▶ ${clock(flag.start)}`,
  });
  jump.addEventListener("click", () => jumpTo(flag));

  const score = Number(signal.score);
  const evidence = String(signal.evidence ?? "").trim();
  const item = el("li", {
    class: "flag", "data-seq": signal.seq, "data-label": signal.label, "data-speaker": signal.speaker,
    "data-start": flag.start, "data-end": flag.end,
  },
  el("div", { class: "flag-head" },
    jump,
    el("strong", { class: "flag-label", text: humanise(signal.label) }),
    el("span", { class: "flag-speaker", "data-speaker": signal.speaker, text: speakerName(signal.speaker) }),
    Number.isFinite(score) ? el("span", { class: "flag-score", title: "How sure the detector was (0 to 1)", text: `score ${score.toFixed(2)}` }) : null),
  el("p", { class: "flag-why" },
    el("span", { class: "why-label", text: evidence ? "Heard " : "" }),
    evidence ? el("q", { class: "evidence", text: evidence }) : el("span", { class: "evidence", "data-none": "true", text: "No words quoted (detected from the timing of the call)" }),
    el("span", { class: "flag-when", text: ` · ${clock(flag.start)}–${clock(flag.end)}, flagged at ${clock(signal.at)}` }),
    signal.rule ? el("span", { class: "flag-rule", title: "The rule that raised this flag: coach report gives QA's precision per rule, and a playbook can switch it off", text: ` · rule ${signal.rule}` }) : null),
  promptShown(prompt),
  reviewForm(flag),
  el("ul", { class: "reviews", "aria-label": "Reviews" }));
  for (const review of flag.reviews) addReview(item, review);
  flag.nodes = flag.nodes.filter((n) => !n.classList.contains("flag")).concat(item);
  return item;
}

function promptShown(prompt) {
  if (!prompt) {
    return el("div", { class: "prompt-shown", "data-none": "true" }, el("span", { class: "prompt-none", text: "No prompt was shown to the agent for this flag." }));
  }
  const kind = prompt.kind === "stop_sign" ? "Stop sign" : prompt.kind === "deescalate" ? "Suggestion" : humanise(prompt.kind);
  return el("div", { class: "prompt-shown", "data-kind": prompt.kind, "data-prompt-id": prompt.id },
    el("span", { class: "prompt-kind", text: `${kind} shown at ${clock(prompt.at)}` }),
    el("strong", { class: "prompt-title", text: prompt.title || "" }),
    el("span", { class: "prompt-text", text: prompt.text || "" }));
}

function reviewForm(flag) {
  const note = el("textarea", { class: "review-note", rows: 2, maxlength: 2000, placeholder: "Note (optional)", "aria-label": `Note on the ${humanise(flag.signal.label).toLowerCase()} flag` });
  const right = el("button", { type: "button", class: "button review-right", title: "The flag was right", text: "✓ Right" });
  const wrong = el("button", { type: "button", class: "button review-wrong", title: "The flag was wrong", text: "✗ Wrong" });
  const status = el("span", { class: "review-status", role: "status" });
  const box = el("div", { class: "review-form" }, note, el("div", { class: "review-buttons" }, right, wrong, status));
  right.addEventListener("click", () => saveReview(flag, "right", box));
  wrong.addEventListener("click", () => saveReview(flag, "wrong", box));
  return box;
}

async function saveReview(flag, verdict, box) {
  const callId = current.id;
  const note = box.querySelector(".review-note");
  const buttons = box.querySelectorAll("button");
  const status = box.querySelector(".review-status");
  buttons.forEach((b) => { b.disabled = true; });
  status.dataset.kind = "info";
  status.textContent = "Saving…";
  try {
    const resp = await api(`/api/calls/${encodeURIComponent(callId)}/reviews`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ seq: flag.signal.seq, verdict, note: note.value.trim() || null }),
    });
    const review = await resp.json();
    flag.reviews.push(review);
    const item = box.closest(".flag");
    if (item) addReview(item, review);
    note.value = "";
    status.textContent = "Saved";
  } catch (err) {
    status.dataset.kind = "error";
    status.textContent = err.status === 403 ? "Only QA, lead or admin tokens can review calls"
      : err.status === 401 ? "This link's token is not valid"
      : `Not saved: ${explain(err, "call")}`;
  } finally {
    buttons.forEach((b) => { b.disabled = false; });
  }
}

function addReview(item, review) {
  const at = new Date(review.reviewed_at * 1000);
  const entry = el("li", { class: "review", "data-verdict": review.verdict, "data-review-id": review.review_id },
    el("span", { class: "verdict", text: review.verdict === "right" ? "✓ Right" : "✗ Wrong" }),
    el("span", { class: "reviewer", text: review.reviewer }),
    el("time", { class: "reviewed-at", datetime: at.toISOString(), title: whenLong.format(at), text: when.format(at) }),
    review.note ? el("p", { class: "review-note-text", text: review.note }) : null);
  item.querySelector(".reviews").append(entry);
  item.dataset.verdict = review.verdict; // the latest verdict colours the flag
}

// ---- transcript ------------------------------------------------------------------

function renderTranscript(lines, flags) {
  transcript.replaceChildren();
  $("no-transcript").hidden = lines.length > 0;
  for (const line of lines) {
    const e = line.event;
    const time = el("button", { type: "button", class: "line-time", title: "Play from here", text: clock(line.start) });
    time.addEventListener("click", () => seek(line.start));
    const node = el("li", {
      class: "line", "data-start": line.start, "data-end": line.end, "data-speaker": line.speaker, "data-id": e.id,
      "data-sentiment": typeof e.sentiment === "number" && Math.abs(e.sentiment) >= 0.3 ? (e.sentiment < 0 ? "negative" : "positive") : null,
    },
    time,
    el("span", { class: "speaker", text: speakerName(line.speaker) }),
    el("span", { class: "text", text: e.text }));
    // the flags about these words
    const about = flags.filter((f) => overlaps(f, line) && (f.signal.speaker === line.speaker || line.speaker === "mixed"));
    if (about.length) {
      node.classList.add("flagged");
      const tags = el("span", { class: "line-flags" });
      for (const flag of about) {
        const tag = el("button", { type: "button", class: "tag line-flag", "data-seq": flag.signal.seq, text: `⚑ ${humanise(flag.signal.label)}`, title: "Go to this flag" });
        tag.addEventListener("click", () => {
          jumpTo(flag);
          revealFlag(flag);
        });
        tags.append(tag);
      }
      node.append(tags);
    }
    line.node = node;
    transcript.append(node);
  }
}

function overlaps(flag, line) {
  return (flag.start < line.end && flag.end > line.start) || flag.start === line.start;
}

/** The line spoken at `t`: the latest-starting line with start <= t < end, else the last one started before t. */
function lineAt(t) {
  let inside = null;
  let last = null;
  for (const line of current.lines) {
    if (line.start > t) break; // sorted by start
    last = line;
    if (t < line.end) inside = line;
  }
  return inside || last;
}

/** Bring the view in line with the player's time: playhead, current line, flags being heard. */
function sync() {
  if (!current?.lines) return;
  const t = player.dataset.ready === "true" ? player.currentTime : 0;
  timeline.querySelector(".playhead").style.left = pct(t);
  const line = lineAt(t);
  if (line !== currentLine) {
    if (currentLine?.node) {
      currentLine.node.classList.remove("current");
      currentLine.node.removeAttribute("aria-current");
    }
    currentLine = line;
    if (line?.node) {
      line.node.classList.add("current");
      line.node.setAttribute("aria-current", "true");
      scrollWithin(transcript.closest(".qa-pane"), line.node);
    }
  }
  for (const flag of current.flags) {
    const on = flag.start <= t && t < Math.max(flag.end, flag.start + 0.5);
    for (const node of flag.nodes) node.classList.toggle("playing", on);
  }
}

/** Scroll `box` (not the page) so that `node` is visible, about a third of the way down. */
function scrollWithin(box, node) {
  if (!box) return;
  if (getComputedStyle(box).overflowY === "visible") { // narrow window: the page scrolls instead
    node.scrollIntoView({ block: "nearest" });
    return;
  }
  const b = box.getBoundingClientRect();
  const n = node.getBoundingClientRect();
  if (n.top >= b.top + 4 && n.bottom <= b.bottom - 4) return;
  box.scrollTop += n.top - b.top - box.clientHeight / 3;
}

let frame = 0;
function tick() {
  sync();
  frame = player.paused ? 0 : requestAnimationFrame(tick);
}
for (const type of ["timeupdate", "seeking", "seeked", "loadedmetadata", "pause", "ended"]) player.addEventListener(type, sync);
player.addEventListener("play", () => {
  if (!frame) frame = requestAnimationFrame(tick);
});

// ---- small helpers ---------------------------------------------------------------

function speakerName(speaker) {
  return speaker === "agent" ? "Agent" : speaker === "customer" ? "Customer" : "Both";
}

/** Seconds of call audio as "m:ss". */
function clock(seconds) {
  return duration(seconds);
}

// ---- wiring ---------------------------------------------------------------------

function applyFilters() {
  history.replaceState(history.state, "", pageUrl(filterParams()));
  loadCalls();
}

form.addEventListener("submit", (ev) => {
  ev.preventDefault();
  if (form.reportValidity()) applyFilters();
});
// Checkbox, dates and risk apply at once; the text boxes on Enter or when left.
form.addEventListener("change", () => {
  if (form.checkValidity()) applyFilters();
});
form.addEventListener("reset", () => setTimeout(applyFilters)); // after the fields are reset
$("more").addEventListener("click", () => loadCalls(true));

window.addEventListener("popstate", () => {
  filtersFromUrl();
  loadCalls();
  const id = param("call_id");
  if (!id) closeCall();
  else if (id !== current?.id) openCall(id, false);
});

filtersFromUrl();
loadCalls();
if (param("call_id")) openCall(param("call_id"), false);
