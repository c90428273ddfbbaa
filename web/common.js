// Helpers shared by the sidebar and the board: query parameters, websocket with
// reconnect/backoff, risk bands, label humanising and small DOM helpers.
// Everything that comes from an event is written with textContent, never innerHTML.

/** A query-string parameter of this page, or "" when absent. */
export function param(name) {
  return new URLSearchParams(location.search).get(name) || "";
}

/** The access token from `?token=T` ("" when absent: the server then decides). */
export function token() {
  return param("token");
}

/** Absolute websocket URL for a server path, carrying the page's token. */
export function wsUrl(path) {
  const base = (location.protocol === "https:" ? "wss://" : "ws://") + location.host;
  const t = token();
  return t ? `${base}${path}?token=${encodeURIComponent(t)}` : base + path;
}

/** URL of the agent sidebar for one call, with the same token as this page. */
export function sidebarUrl(callId) {
  const q = new URLSearchParams({ call_id: callId });
  if (token()) q.set("token", token());
  return `/sidebar?${q}`;
}

/** Close codes after which reconnecting cannot help, with what to tell the user. */
export const FATAL_CLOSES = {
  4401: "This link's token is not valid",
  4403: "You can only see your own calls",
  4404: "No such call",
};

/**
 * Open a websocket to `path` and keep it open: on a close that is not one of
 * FATAL_CLOSES, reconnect after 1 s, 2 s, 4 s, 8 s, then every 10 s. The delay
 * goes back to 1 s once a connection has delivered a message.
 *
 * handlers:
 *   onOpen()           - connected (again): the server replays from the start,
 *                        so reset the view here
 *   onMessage(obj)     - one parsed JSON frame
 *   onStatus(state, text) - state is "connecting" | "live" | "reconnecting" | "error" | "closed"
 *   shouldReconnect()  - optional; return false to stop after a normal close
 * Returns { close() } which stops it for good (no more handlers are called).
 */
export function connect(path, { onOpen, onMessage, onStatus, shouldReconnect }) {
  let ws = null;
  let delay = 1000;
  let timer = null;
  let stopped = false;

  const status = (state, text) => onStatus && onStatus(state, text);

  function open() {
    timer = null;
    status("connecting", "connecting…");
    ws = new WebSocket(wsUrl(path));
    ws.onopen = () => {
      if (stopped) return;
      status("live", "connected");
      onOpen && onOpen();
    };
    ws.onmessage = (ev) => {
      if (stopped) return;
      delay = 1000;
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch {
        return; // not JSON: nothing we can show
      }
      if (msg && typeof msg === "object") onMessage(msg);
    };
    ws.onclose = (ev) => {
      if (stopped) return;
      ws = null;
      if (FATAL_CLOSES[ev.code]) {
        stopped = true;
        status("error", FATAL_CLOSES[ev.code]);
        return;
      }
      if (shouldReconnect && !shouldReconnect()) {
        stopped = true;
        status("closed", "disconnected");
        return;
      }
      status("reconnecting", `reconnecting… (${Math.round(delay / 1000)} s)`);
      timer = setTimeout(open, delay);
      delay = Math.min(delay * 2, 10000);
    };
    // onerror is always followed by onclose, which does the work.
    ws.onerror = () => {};
  }

  open();
  return {
    close() {
      stopped = true;
      if (timer) clearTimeout(timer);
      if (ws) ws.close(1000);
      ws = null;
    },
  };
}

/** "low" (< 40), "mid" (40–69) or "high" (>= 70). */
export function riskBand(score) {
  const s = Number(score) || 0;
  return s >= 70 ? "high" : s >= 40 ? "mid" : "low";
}

/** "escalation_request" -> "Escalation request". */
export function humanise(label) {
  const s = String(label ?? "").replace(/[_-]+/g, " ").trim();
  return s ? s[0].toUpperCase() + s.slice(1) : "";
}

/** Seconds as "m:ss" or "h:mm:ss". */
export function duration(seconds) {
  const s = Math.max(0, Math.floor(Number(seconds) || 0));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
}

/** The last 8 characters of a long call id (whole id in the title attribute). */
export function shortId(id) {
  const s = String(id ?? "");
  return s.length > 10 ? "…" + s.slice(-8) : s;
}

/**
 * Create an element: el("span", { class: "tag", text: "x", title: "y" }, child...).
 * `text` is set with textContent; other keys become attributes (data-* included).
 */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "text") node.textContent = String(value);
    else if (key === "class") node.className = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

/** Small tags for signal labels. */
export function signalTags(labels) {
  const wrap = el("span", { class: "tags" });
  for (const label of labels || []) {
    wrap.append(el("span", { class: "tag", "data-label": label, text: humanise(label) }));
  }
  return wrap;
}

/** Show a connection state in `#connection-status` (data-state drives the colour). */
export function showConnection(state, text) {
  const node = document.getElementById("connection-status");
  if (!node) return;
  node.dataset.state = state;
  node.textContent = text;
}

/** Request headers carrying the page's token as a bearer token ({} when there is none). */
export function authHeaders() {
  const t = token();
  return t ? { Authorization: `Bearer ${t}` } : {};
}
