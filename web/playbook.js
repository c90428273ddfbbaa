// /playbook?token=T (lead, qa or admin): the playbook in use (and why an edit of its file was
// refused), a sentence tried against it ("would this fire, and why?"), and each signal's precision
// from QA's verdicts, and the same for each built-in rule, with whether the playbook switched it off. Everything from the server is written with textContent.
import { authHeaders, el, humanise } from "/static/common.js";

const notice = document.getElementById("notice");

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { ...authHeaders(), "Content-Type": "application/json" } });
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    throw new Error(typeof body.detail === "string" ? body.detail : `the server answered ${response.status}`);
  }
  return response.json();
}

function say(text) {
  notice.hidden = !text;
  notice.textContent = text || "";
}

async function load() {
  const [book, figures] = await Promise.all([api("/api/playbook"), api("/api/playbook/precision")]);
  const loaded = document.getElementById("loaded");
  loaded.textContent = `${book.path} · loaded ${new Date(book.loaded_at * 1000).toLocaleTimeString()}`;
  say(book.error ? `The last edit was not taken (the playbook in use stays): ${book.error}` : "");
  const byLabel = Object.fromEntries(figures.map((f) => [f.label, f]));
  const own = book.signals || {};
  const labels = [...new Set([...Object.keys(book.prompts), ...Object.keys(own), ...Object.keys(byLabel)])].sort();
  const rows = labels.map((label) => {
    const prompt = book.prompts[label];
    const mine = own[label];
    const f = byLabel[label] || {};
    const written = [...(mine?.phrases || []), ...((mine?.examples || []).length ? [`${mine.examples.length} examples`] : [])];
    const whose = mine ? `${mine.speaker}${mine.kind === "not_said" ? `, not said in ${mine.within} s` : ""}: ${written.join(", ")}` : "built in";
    return el("tr", { "data-label": label },
      el("th", { scope: "row" }, humanise(label)),
      el("td", {}, whose),
      el("td", {}, prompt ? prompt.title : "(no prompt)"),
      el("td", {}, prompt ? String(prompt.priority) : ""),
      el("td", {}, String(f.flags ?? 0)),
      el("td", {}, String(f.reviewed ?? 0)),
      el("td", { class: "precision" }, f.precision == null ? "-" : `${Math.round(f.precision * 100)}%`));
  });
  document.getElementById("signals").replaceChildren(...rows);
  const byRule = Object.fromEntries(figures.flatMap((f) => f.rules || []).map((r) => [r.rule, r]));
  const rank = (rule) => { const f = byRule[rule.id]; return f?.precision ?? (f?.flags ? 2 : 3); };
  const rules = [...book.built_in].sort((a, b) => rank(a) - rank(b) || a.id.localeCompare(b.id));
  document.getElementById("rules").replaceChildren(...rules.map((rule) => {
    const f = byRule[rule.id] || {};
    const quiet = rule.on && !f.flags;  // nothing to act on: shown on request
    return el("tr", { "data-rule": rule.id, class: rule.on ? "" : "off", ...(quiet ? { "data-quiet": "true" } : {}) },
      el("th", { scope: "row" }, rule.id),
      el("td", {}, rule.kind),
      el("td", {}, rule.on ? "on" : "switched off"),
      el("td", {}, rule.example || (rule.silences ? `Keeps quiet: “${rule.silences}”` : "") || rule.note || "", rule.misfires_on ? el("span", { class: "misfire" }, ` Known to misfire on: “${rule.misfires_on}”`) : ""),
      el("td", {}, String(f.flags ?? 0)),
      el("td", {}, String(f.reviewed ?? 0)),
      el("td", { class: "precision" }, f.precision == null ? "-" : `${Math.round(f.precision * 100)}%`));
  }));
  document.getElementById("rule-count").textContent = String(rules.length);
  showRules();
}

function showRules() {
  const all = document.getElementById("all-rules").checked;
  for (const row of document.querySelectorAll("#rules tr[data-quiet]")) row.hidden = !all;
}

document.getElementById("all-rules").addEventListener("change", showRules);

document.getElementById("try").addEventListener("submit", async (event) => {
  event.preventDefault();
  const verdict = document.getElementById("verdict");
  const body = { speaker: document.getElementById("speaker").value, text: document.getElementById("sentence").value };
  try {
    const result = await api("/api/playbook/try", { method: "POST", body: JSON.stringify(body) });
    const items = result.signals.map((s) => el("li", { class: s.fires ? "fires" : "quiet", "data-label": s.label },
      el("strong", {}, `${humanise(s.label)}: ${s.fires ? "fires" : "stays quiet"}`),
      ` (${s.by}${s.rule ? `, ${s.rule}` : ""}) because of “${s.evidence}”`,
      s.prompt ? ` → shows “${s.prompt.title}”` : "",
      s.why_not ? `; ${s.why_not}` : ""));
    verdict.replaceChildren(...(items.length ? items : [el("li", { class: "quiet" }, "Nothing would fire.")]));
  } catch (error) {
    say(error.message);
  }
});

load().catch((error) => say(error.message));
