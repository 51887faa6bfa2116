// BEACON's console: a token-signed client of the /v1 API. Every element is built with the DOM
// API (never from HTML strings), so names and causes from documents are shown, not run.
import { initialLanguage, translate } from "/console/i18n.js";
import { el } from "/console/dom.js";
import { describe, drawGraph, legend } from "/console/graph.js";
import { renderReport } from "/console/report.js";
import { windowCard } from "/console/overview.js";

const state = { lang: initialLanguage(), token: sessionStorage.getItem("beacon.token"), role: null, timer: null };
const t = (key, values) => translate(state.lang, key, values);
const main = document.getElementById("main");

// --- The API --------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  if (state.token) headers.set("Authorization", `Bearer ${state.token}`);
  let response;
  try {
    response = await fetch(path, { ...options, headers });
  } catch {
    throw new ApiError(0, t("error.network"));
  }
  const type = response.headers.get("content-type") || "";
  const body = type.includes("json") ? await response.json() : await response.text();
  if (!response.ok) throw refusal(response.status, body);
  return body;
}

// The API's error body (`{"error": {"message": ...}}`) as an ApiError.
function refusal(status, body) {
  return new ApiError(status, (body && body.error && body.error.message) || `HTTP ${status}`);
}

// A POST whose body's progress is reported (fetch cannot say how much of a body is sent):
// `onProgress(sent, total)` as the bytes go; answers and errors as `api` gives them.
function sendWithProgress(path, body, onProgress) {
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    request.open("POST", path);
    if (state.token) request.setRequestHeader("Authorization", `Bearer ${state.token}`);
    request.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) onProgress(event.loaded, event.total);
    });
    request.addEventListener("error", () => reject(new ApiError(0, t("error.network"))));
    request.addEventListener("load", () => {
      const type = request.getResponseHeader("content-type") || "";
      let answer = request.responseText;
      if (type.includes("json")) {
        try { answer = JSON.parse(answer); } catch { answer = null; }
      }
      if (request.status >= 200 && request.status < 300) return resolve(answer);
      reject(refusal(request.status, answer));
    });
    request.send(body);
  });
}

function megabytes(bytes) {
  return (bytes / 1048576).toFixed(bytes < 10485760 ? 2 : 1);
}

// --- Small DOM helpers ----------------------------------------------------------------------

function toast(text) {
  const box = document.getElementById("toast");
  box.textContent = text;
  setTimeout(() => { if (box.textContent === text) box.textContent = ""; }, 6000);
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString(state.lang === "ja" ? "ja-JP" : "en-GB") : "";
}

function duration(startIso, endIso) {
  if (!startIso) return "";
  const seconds = Math.max(0, ((endIso ? new Date(endIso) : new Date()) - new Date(startIso)) / 1000);
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const minutes = Math.floor(seconds / 60);
  return `${minutes} min ${Math.round(seconds % 60)} s`;
}

function status(text) {
  return el("span", { class: `status ${text}`, text });
}

function translateStatic() {
  document.documentElement.lang = state.lang;
  for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  document.getElementById("lang").value = state.lang;
}

function stopPolling() {
  if (state.timer) clearTimeout(state.timer);
  state.timer = null;
}

// Calls `refresh` now and every `ms` while the page stays the same.
function poll(refresh, ms) {
  stopPolling();
  const page = location.hash;
  const tick = async () => {
    if (location.hash !== page) return;
    // A refresh that answers false has nothing more to follow (a finished execution).
    let more = true;
    try { more = (await refresh()) !== false; } catch (error) { if (error.status === 401) return signOut(); }
    if (more && location.hash === page) state.timer = setTimeout(tick, ms);
  };
  tick();
}

// --- Sign-in --------------------------------------------------------------------------------

async function signIn(token) {
  state.token = token || null;
  const session = await api("/v1/session");
  state.role = session.role;
  state.session = session;
  if (token) sessionStorage.setItem("beacon.token", token);
  document.getElementById("who").textContent = `${session.name} (${session.role})`;
  document.getElementById("signout").hidden = !token;
}

function signOut() {
  sessionStorage.removeItem("beacon.token");
  state.token = null;
  state.role = null;
  document.getElementById("who").textContent = "";
  location.hash = "#/signin";
}

async function renderSignIn() {
  const input = el("input", { type: "password", id: "token", autocomplete: "off", "aria-label": t("signin.token") });
  const message = el("p", { class: "error", role: "alert" });
  const form = el("form", { class: "card", onsubmit: async (event) => {
    event.preventDefault();
    try {
      await signIn(input.value.trim());
      location.hash = "#/";
    } catch (error) {
      message.textContent = error.status === 401 ? t("signin.bad") : error.message;
    }
  } },
  el("h1", { text: t("signin.title") }),
  el("label", { for: "token", text: t("signin.token") }), " ", input, " ",
  el("button", { type: "submit", id: "signin", text: t("signin.submit") }),
  el("p", { class: "muted", text: t("signin.help") }), message);
  main.replaceChildren(form);
  // A loopback server without tokens lets the browser in as it is.
  try {
    state.token = null;
    const access = await (await fetch("/console/access.json")).json();
    if (access.tokens) return input.focus();
    form.append(el("p", { text: t("signin.open") }),
      el("button", { type: "button", class: "secondary", id: "open", onclick: async () => {
        await signIn(null);
        location.hash = "#/";
      }, text: t("signin.continue") }));
  } catch { /* tokens are needed */ }
  input.focus();
}

// --- Executions -----------------------------------------------------------------------------

function uploadCard() {
  const strategy = el("select", { id: "strategy", "aria-label": t("upload.strategy") },
    ...["auto", "inline", "distributed", "batch"].map((s) => el("option", { value: s, text: s })));
  const files = el("input", { type: "file", id: "files", multiple: true, "aria-label": t("upload.choose") });
  const progress = el("div", { id: "uploads" });
  // The options this server lets an upload choose (serve.upload_options).
  const allowed = new Set((state.session && state.session.uploadOptions) || []);
  const schema = allowed.has("schema") ? el("input", { type: "file", id: "schema", accept: ".json,application/json", "aria-label": t("upload.schema") }) : null;
  const maxTokens = allowed.has("max_tokens")
    ? el("input", { type: "number", id: "max-tokens", min: 1, max: state.session.uploadMaxTokens, "aria-label": t("upload.maxTokens") }) : null;
  const temperature = allowed.has("temperature")
    ? el("input", { type: "number", id: "temperature", min: 0, max: 1, step: 0.1, "aria-label": t("upload.temperature") }) : null;
  const send = async (list) => {
    for (const file of list) {
      const said = el("span", { text: t("upload.sending", { name: file.name }) });
      const bar = el("progress", { max: Math.max(file.size, 1), value: 0, "aria-label": file.name });
      const line = el("div", { class: "upload", "data-file": file.name }, said, bar);
      progress.append(line);
      const sent = (loaded, total) => {
        bar.max = total;
        bar.value = loaded;
        line.dataset.sent = String(loaded);
        said.textContent = loaded < total
          ? t("upload.progress", { name: file.name, sent: megabytes(loaded), total: megabytes(total), percent: Math.floor((100 * loaded) / total) })
          : t("upload.checking", { name: file.name });
      };
      const form = new FormData();
      form.append("file", file, file.name);
      form.append("strategy", strategy.value);
      if (schema && schema.files.length) form.append("schema", await schema.files[0].text());
      if (maxTokens && maxTokens.value) form.append("max_tokens", maxTokens.value);
      if (temperature && temperature.value) form.append("temperature", temperature.value);
      try {
        const accepted = await sendWithProgress("/v1/documents", form, sent);
        said.replaceChildren(t("upload.done", { name: file.name, execution: "" }),
          el("a", { href: `#/e/${encodeURIComponent(accepted.execution)}`, text: accepted.execution }));
      } catch (error) {
        said.className = "error";
        said.textContent = t("upload.failed", { name: file.name, message: error.message });
      }
    }
  };
  files.addEventListener("change", () => send([...files.files]));
  const drop = el("div", { class: "drop", id: "drop",
    ondragover: (event) => { event.preventDefault(); drop.classList.add("over"); },
    ondragleave: () => drop.classList.remove("over"),
    ondrop: (event) => { event.preventDefault(); drop.classList.remove("over"); send([...event.dataTransfer.files]); },
  }, el("p", { text: t("upload.drop") }), el("div", { class: "row" }, files, el("label", { text: t("upload.strategy") }), strategy),
  schema || maxTokens || temperature ? el("div", { class: "row options" },
    schema ? el("label", {}, t("upload.schema"), " ", schema) : "",
    maxTokens ? el("label", {}, t("upload.maxTokens"), " ", maxTokens) : "",
    temperature ? el("label", {}, t("upload.temperature"), " ", temperature) : "") : "");
  return el("section", { class: "card" }, el("h2", { text: t("upload.title") }), drop, progress);
}

async function renderExecutions() {
  const filter = el("select", { id: "status-filter", "aria-label": t("list.filter") },
    el("option", { value: "", text: t("list.all") }),
    ...["QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"].map((s) => el("option", { value: s, text: s })));
  const search = el("input", { type: "text", id: "search", placeholder: t("list.search"), "aria-label": t("list.search") });
  const since = el("input", { type: "date", id: "since", "aria-label": t("list.since") });
  const until = el("input", { type: "date", id: "until", "aria-label": t("list.until") });
  const body = el("tbody", { id: "executions" });
  const columns = ["col.status", "col.document", "exec.strategy", "exec.units", "col.throttles", "exec.cost", "col.started", "col.duration"];
  const table = el("div", { class: "table-wrap" }, el("table", {},
    el("thead", {}, el("tr", {}, ...columns.map((k) => el("th", { text: t(k) })))),
    body));
  const empty = el("p", { class: "muted", text: t("list.empty"), hidden: true });
  // Pages by cursor: the first is the newest; "older" follows `next`, "newer" goes back.
  const cursors = [null];
  const newer = el("button", { type: "button", class: "secondary", id: "newer", text: t("list.newer") });
  const older = el("button", { type: "button", class: "secondary", id: "older", text: t("list.older") });
  const where = el("span", { class: "muted", id: "page-number" });
  const canUpload = state.role === "submitter" || state.role === "admin";
  main.replaceChildren(el("h1", { text: t("list.title") }), canUpload ? uploadCard() : "",
    el("div", { class: "row card" }, el("label", { text: t("list.filter") }), filter, search,
      el("label", { for: "since", text: t("list.since") }), since, el("label", { for: "until", text: t("list.until") }), until),
    table, empty, el("div", { class: "row pager" }, newer, where, older));
  let next = null;
  const refresh = async () => {
    const query = new URLSearchParams({ limit: "50" });
    if (filter.value) query.set("status", filter.value);
    if (search.value.trim()) query.set("document", search.value.trim());
    // Dates are the browser's days: from the first day's midnight to the end of the last.
    if (since.value) query.set("since", new Date(`${since.value}T00:00`).toISOString());
    if (until.value) {
      const end = new Date(`${until.value}T00:00`);
      end.setDate(end.getDate() + 1);
      query.set("until", end.toISOString());
    }
    const cursor = cursors[cursors.length - 1];
    if (cursor) query.set("cursor", cursor);
    const page = await api(`/v1/executions?${query}`);
    body.replaceChildren(...page.executions.map((e) => el("tr", { "data-execution": e.name },
      el("td", {}, status(e.status)),
      el("td", {}, el("a", { href: `#/e/${encodeURIComponent(e.name)}`, text: e.document.name })),
      el("td", { text: e.strategy }),
      el("td", { class: "units", text: e.unitsTotal ? `${e.unitsDone} / ${e.unitsTotal}${e.unitsFailed ? ` (${e.unitsFailed} ✗)` : ""}` : "—" }),
      el("td", { text: e.throttles == null ? "—" : String(e.throttles) }),
      el("td", { text: e.costUsd == null ? "—" : `$${e.costUsd.toFixed(4)}` }),
      el("td", { text: when(e.startedAt) }),
      el("td", { text: duration(e.startedAt, e.finishedAt) }))));
    empty.hidden = page.executions.length > 0;
    next = page.next;
    older.disabled = !next;
    newer.disabled = cursors.length === 1;
    where.textContent = t("list.page", { n: cursors.length });
  };
  const again = () => { cursors.length = 1; refresh(); };
  older.addEventListener("click", () => { if (next) { cursors.push(next); refresh(); } });
  newer.addEventListener("click", () => { if (cursors.length > 1) { cursors.pop(); refresh(); } });
  for (const input of [filter, since, until]) input.addEventListener("change", again);
  search.addEventListener("input", again);
  poll(refresh, 2000);
}

// --- One execution --------------------------------------------------------------------------

async function renderExecution(name) {
  const path = `/v1/executions/${encodeURIComponent(name)}`;
  const head = el("div", { class: "card", id: "execution" });
  const units = el("tbody", { id: "units" });
  const onlyFailed = el("input", { type: "checkbox", id: "only-failed" });
  const actions = el("div", { class: "row", id: "actions" });
  const history = el("tbody", { id: "history" });
  const typeFilter = el("input", { type: "text", id: "history-filter", placeholder: t("history.filter"), "aria-label": t("history.filter") });
  let events = [];
  const showHistory = () => {
    const wanted = typeFilter.value.trim().toLowerCase();
    history.replaceChildren(...events.filter((e) => !wanted || e.type.toLowerCase().includes(wanted)).map((e) => {
      const details = Object.entries(e).find(([key]) => key.endsWith("EventDetails"));
      const summary = details ? (details[1].name || details[1].resource || details[1].error || "") : "";
      return el("tr", { "data-event": e.id }, el("td", { text: e.id }), el("td", { text: when(e.timestamp) }),
        el("td", { text: e.type }), el("td", { text: summary }));
    }));
  };
  typeFilter.addEventListener("input", showHistory);
  const loadHistory = el("button", { type: "button", class: "secondary", id: "history-load", onclick: async () => {
    const all = [];
    let cursor = null;
    do {
      const page = await api(`${path}/history?limit=1000${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
      all.push(...page.events);
      cursor = page.next;
    } while (cursor);
    events = all;
    showHistory();
  }, text: t("history.load") });
  const historySection = el("section", { class: "card" }, el("h2", { text: t("history.title") }),
    el("div", { class: "row" }, loadHistory, typeFilter),
    el("div", { class: "table-wrap" }, el("table", {},
      el("thead", {}, el("tr", {}, ...["history.id", "history.time", "history.type", "history.detail"].map((k) => el("th", { text: t(k) })))),
      history)));
  const graphBox = el("div", { class: "graph-wrap", id: "graph-wrap" });
  const chosen = el("p", { id: "graph-chosen", class: "muted", "aria-live": "polite" });
  const graphSection = el("section", { class: "card" }, el("h2", { text: t("graph.title") }), graphBox, legend(t), chosen);
  main.replaceChildren(el("h1", { text: name }), head, actions, graphSection,
    el("section", { class: "card" }, el("h2", { text: t("exec.units") }),
      el("label", {}, onlyFailed, " ", t("exec.onlyFailed")),
      el("div", { class: "table-wrap" }, el("table", {},
        el("thead", {}, el("tr", {}, ...["unit.index", "unit.title", "unit.status", "unit.path", "unit.attempts", "unit.tokens", "unit.cause"].map((k) => el("th", { text: t(k) })))),
        units))), historySection);
  const act = (label, verb) => el("button", { type: "button", id: verb, onclick: async () => {
    try {
      await api(`${path}/${verb}`, { method: "POST" });
      toast(`${label}: OK`);
      // It runs again (or stops): follow it until it ends.
      poll(refresh, 1500);
    } catch (error) { toast(error.message); }
  }, text: label });
  const refresh = async () => {
    const view = await api(path);
    const u = view.units;
    // For scripts and tests: where the execution stands, without reading the words.
    head.dataset.status = view.status;
    head.dataset.failed = String(u.failed);
    head.replaceChildren(el("div", { class: "kv" },
      el("span", { text: t("col.status") }), status(view.status),
      el("span", { text: t("col.document") }), el("span", { text: view.document.name }),
      el("span", { text: t("exec.strategy") }), el("span", { text: view.strategy }),
      el("span", { text: t("col.started") }), el("span", { text: when(view.startedAt) }),
      el("span", { text: t("col.duration") }), el("span", { text: duration(view.startedAt, view.finishedAt) }),
      el("span", { text: t("exec.attempts") }), el("span", { text: view.attempts }),
      el("span", { text: t("exec.units") }), el("span", {},
        el("progress", { max: Math.max(u.total, 1), value: u.succeeded + u.failed, "aria-label": t("exec.units") }),
        ` ${u.succeeded} ✓ · ${u.failed} ✗ · ${u.pending} … / ${u.total}`),
      el("span", { text: t("exec.tokens") }), el("span", { text: `${view.usage.inputTokens} / ${view.usage.outputTokens}` }),
      el("span", { text: t("exec.requests") }), el("span", { text: `${view.usage.requests} (${view.usage.throttles})` }),
      el("span", { text: t("exec.cost") }), el("span", { text: view.usage.costUsd == null ? "—" : `$${view.usage.costUsd.toFixed(4)}` }),
      view.error ? el("span", { text: t("exec.error") }) : "", view.error ? el("span", { class: "error", text: `${view.error}: ${view.cause || ""}` }) : ""),
      view.resumable ? el("p", { class: "warning", id: "orphaned", text: t("exec.orphaned") }) : "");
    const may = state.role === "submitter" || state.role === "admin";
    const running = view.status === "RUNNING" || view.status === "QUEUED";
    actions.replaceChildren(
      may && running ? act(t("exec.stop"), "stop") : "",
      may && view.resumable ? act(t("exec.resume"), "resume") : "",
      may && !running && u.failed > 0 ? act(t("exec.redrive"), "redrive") : "",
      view.report ? el("a", { class: "button", id: "open-report", href: `#/e/${encodeURIComponent(name)}/report`, text: t("exec.openReport") }) : "",
    view.report ? el("a", { class: "button secondary", id: "report", href: "#", onclick: async (event) => {
        event.preventDefault();
        const markdown = await api(`${path}/report.md`);
        const blob = new Blob([markdown], { type: "text/markdown" });
        const link = el("a", { href: URL.createObjectURL(blob), download: `${view.document.name}.report.md` });
        link.click();
      }, text: t("exec.report") }) : "");
    // The drawing again, keeping the keyboard where it was.
    const graph = await api(`${path}/graph`);
    const focused = document.activeElement && document.activeElement.closest ? document.activeElement.closest("[data-node]") : null;
    const focusId = focused && graphBox.contains(focused) ? focused.dataset.node : null;
    graphBox.replaceChildren(drawGraph(graph, t, (node) => { chosen.textContent = describe(node, t); }));
    if (focusId) {
      const again = graphBox.querySelector(`[data-node="${CSS.escape(focusId)}"]`);
      if (again) again.focus();
    }
    const list = await api(`${path}/units${onlyFailed.checked ? "?status=failed" : ""}`);
    units.replaceChildren(...list.units.map((unit) => el("tr", { "data-unit": unit.index },
      el("td", { text: unit.index }), el("td", { text: unit.title }), el("td", {}, status(unit.status)),
      el("td", { text: unit.path }), el("td", { text: unit.attempts }),
      el("td", { text: `${unit.inputTokens} / ${unit.outputTokens}` }),
      el("td", { class: unit.error ? "error" : "", text: unit.error ? `${unit.error}: ${unit.cause || ""}` : "" }))));
    return running;
  };
  onlyFailed.addEventListener("change", refresh);
  poll(refresh, 1500);
}

// --- A report -------------------------------------------------------------------------------

async function renderReportPage(name) {
  const path = `/v1/executions/${encodeURIComponent(name)}`;
  const back = el("a", { href: `#/e/${encodeURIComponent(name)}`, text: `← ${name}` });
  const body = el("div", { id: "report-view" });
  main.replaceChildren(el("p", {}, back), body);
  main.classList.add("wide");
  try {
    renderReport(body, await api(`${path}/report`), t);
  } catch (error) {
    body.replaceChildren(el("p", { class: "error", role: "alert", text: error.message }));
  }
}

// --- Overview -------------------------------------------------------------------------------

async function renderOverview() {
  const body = el("div", { id: "overview" });
  main.replaceChildren(el("h1", { text: t("overview.title") }), body);
  poll(async () => {
    const overview = await api("/v1/overview");
    body.replaceChildren(
      windowCard("last-hour", t("overview.hour"), overview.hour, t),
      windowCard("last-day", t("overview.day"), overview.day, t));
    return true;
  }, 10000);
}

// --- Alarms ---------------------------------------------------------------------------------

// An alarm's words in the reader's language, or the server's English when there are none.
function alarmText(key, english) {
  const text = t(key);
  return text === key ? english : text;
}

// Why an alarm is in its state, from the data the server gives beside its English reason.
function why(data, english) {
  if (!data) return english;
  const values = { ...data, statistic: data.statistic ? t(`alarms.statistic.${data.statistic}`) : "",
    op: data.strictlyAbove ? ">" : "≥" };
  return alarmText(`why.${data.kind}`, english).replace(/\{(\w+)\}/g, (_, name) => (name in values ? String(values[name]) : ""));
}

async function renderAlarms() {
  const body = el("tbody", { id: "alarms" });
  const transitions = el("div", { id: "transitions" });
  main.replaceChildren(el("h1", { text: t("alarms.title") }),
    el("div", { class: "table-wrap card" }, el("table", {},
      el("thead", {}, el("tr", {}, ...["alarms.name", "alarms.state", "alarms.rule", "alarms.reason"].map((k) => el("th", { text: t(k) })))),
      body)),
    el("section", { class: "card" }, el("h2", { text: t("alarms.history") }), transitions));
  const refresh = async () => {
    const { alarms } = await api("/v1/alarms");
    body.replaceChildren(...alarms.map((a) => el("tr", { "data-alarm": a.name },
      el("td", {}, el("strong", { text: a.name }), el("br"), el("span", { class: "muted", text: alarmText(`alarm.${a.name}`, a.description) })),
      el("td", {}, el("span", { class: `status ${a.state === "ALARM" ? "FAILED" : a.state === "OK" ? "SUCCEEDED" : "QUEUED"}`, text: t(`alarms.state.${a.state}`) })),
      el("td", { text: t("alarms.ruleText", {
        statistic: t(`alarms.statistic.${a.statistic}`), op: a.comparison === "GreaterThanThreshold" ? ">" : "≥",
        threshold: a.threshold, seconds: a.periodSeconds, periods: a.evaluationPeriods }) }),
      el("td", { class: "reason", text: why(a.why, a.reason) }))));
    const all = alarms.flatMap((a) => a.history).sort((x, y) => (x.at < y.at ? 1 : -1)).slice(0, 50);
    transitions.replaceChildren(el("ul", {}, ...all.map((tr) =>
      el("li", {}, `${when(tr.at)} · `, el("strong", { text: tr.alarm }),
        ` ${t(`alarms.state.${tr.from}`)} → ${t(`alarms.state.${tr.to}`)}: ${why(tr.why, tr.reason)}`))));
  };
  poll(refresh, 5000);
}

// --- Routing --------------------------------------------------------------------------------

async function route() {
  stopPolling();
  main.classList.remove("wide");
  translateStatic();
  const hash = location.hash || "#/";
  if (hash === "#/signin") return renderSignIn();
  if (!state.role) {
    try { await signIn(state.token); } catch { location.hash = "#/signin"; return; }
  }
  if (hash === "#/alarms") return renderAlarms();
  if (hash === "#/overview") return renderOverview();
  const report = hash.match(/^#\/e\/(.+)\/report$/);
  if (report) return renderReportPage(decodeURIComponent(report[1]));
  const execution = hash.match(/^#\/e\/(.+)$/);
  if (execution) return renderExecution(decodeURIComponent(execution[1]));
  return renderExecutions();
}

document.getElementById("lang").addEventListener("change", (event) => {
  state.lang = event.target.value;
  sessionStorage.setItem("beacon.lang", state.lang);
  route();
});
document.getElementById("signout").addEventListener("click", signOut);
window.addEventListener("hashchange", route);
route();
