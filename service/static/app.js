// The attention playground: sends the text to the public API (POST /translate) and shows the
// answer: translation, n-best list, timing, attention views; errors exactly as the API words them.
import { $, el } from "./dom.js";
import { initHeatmap, renderAlignment, renderHeatmap } from "./attention.js";

// ---- model picker and badge ------------------------------------------------------------------

function apiHeaders() {
  const headers = { "Content-Type": "application/json" };
  if ($("key").value) headers["X-API-Key"] = $("key").value;
  return headers;
}

let modelRetry = null;
let models = [];  // the ready ones, as GET /models lists them

async function loadModels() {
  const badge = $("model");
  clearTimeout(modelRetry);
  try {
    const response = await fetch("/models", { headers: apiHeaders() });
    const ready = response.ok
      ? (await response.json()).models.filter((m) => m.state === "ready") : [];
    if (ready.length) {
      fillPicker(ready);
      showModel();
      return;
    }
    if (response.status === 401 || response.status === 403) {
      // Retrying cannot help: wait until a (different) key is entered.
      badge.textContent = response.status === 401
        ? "enter an API key to see the model" : "the API key is not valid";
      badge.dataset.state = "error";
      return;
    }
    const loading = response.ok || response.status === 503;
    badge.textContent = loading ? "model loading…" : `model: HTTP ${response.status}`;
  } catch (err) {
    badge.textContent = "service unreachable";
  }
  badge.dataset.state = "waiting";
  modelRetry = setTimeout(loadModels, 2000);
}

// The picker keeps the user's choice while it is served; else the default model.
function fillPicker(ready) {
  const picker = $("models"), chosen = picker.value;
  models = ready;
  picker.replaceChildren(...ready.map((m) => {
    const option = el("option", "", `${m.source} → ${m.target} · ${m.id}`);
    option.value = m.id;
    return option;
  }));
  const fallback = ready.find((m) => m.default) || ready[0];
  picker.value = ready.some((m) => m.id === chosen) ? chosen : fallback.id;
}

function showModel() {
  const m = models.find((x) => x.id === $("models").value);
  const badge = $("model");
  badge.textContent = `${m.source} → ${m.target} · ${m.model_id}`;
  badge.title = `${m.id}, version ${m.version} · ${m.variant}`;
  badge.dataset.state = "ready";
  $("translation").lang = m.target;
}

// ---- request --------------------------------------------------------------------------------

function requestBody() {
  const body = { text: $("text").value, return_attention: true, return_alignment: true };
  // An empty field leaves the choice to the service; the service checks every limit.
  if ($("beam").value) body.beam_size = Number($("beam").value);
  if ($("nbest").value) body.n_best = Number($("nbest").value);
  if ($("models").value) body.model = $("models").value;
  const glossary = glossaryEntries($("glossary").value);
  if (Object.keys(glossary).length) body.glossary = glossary;
  return body;
}

// "source = target" (or a tab) per line; the service checks every entry.
function glossaryEntries(text) {
  const entries = {};
  for (const line of text.split("\n")) {
    const match = line.match(/^(.*?)\s*(?:=|\t)\s*(.*)$/);
    if (match && match[1].trim()) entries[match[1].trim()] = match[2].trim();
  }
  return entries;
}

function setBusy(busy) {
  $("app").dataset.state = busy ? "loading" : "idle";
  $("submit").disabled = busy;
  $("submit").textContent = busy ? "Translating…" : "Translate";
}

async function translate(event) {
  event.preventDefault();
  if ($("app").dataset.state === "loading") return;
  setBusy(true);
  let response = null, body = null;
  try {
    response = await fetch("/translate", {
      method: "POST", headers: apiHeaders(), body: JSON.stringify(requestBody()),
    });
    body = await response.json().catch(() => null);
  } catch (err) {
    body = { error: { message: `Could not reach the service: ${err.message}` } };
  }
  setBusy(false);
  if (response && response.ok) render(body);
  else showError(response, body);
}

// ---- errors ---------------------------------------------------------------------------------

const ERROR_TITLES = {
  401: "An API key is required", 403: "The API key is not valid", 413: "Over a limit",
  422: "Invalid request", 503: "The service is not ready", 500: "The server failed",
};

function showError(response, body) {
  const error = (body && body.error) || {};
  const status = response ? response.status : 0;
  const title = ERROR_TITLES[status] || (status ? `HTTP ${status}` : "Network error");
  $("error-title").textContent = status ? `${title} (${status} ${error.code || ""})` : title;
  $("error-message").textContent = error.message || (response && response.statusText) || "";
  const details = $("error-details");
  details.replaceChildren(...(error.details || []).map(
    (d) => el("li", "", `${(d.loc || []).filter((p) => p !== "body").join(".")}: ${d.msg}`)));
  const retry = response && response.headers.get("Retry-After");
  $("error-meta").textContent = [
    retry ? `Retry after ${retry} s.` : "",
    error.request_id ? `Request id ${error.request_id}` : "",
  ].filter(Boolean).join(" · ");
  $("error").hidden = false;
  $("result").hidden = true;
  $("app").dataset.state = "error";
}

// ---- result ---------------------------------------------------------------------------------

function render(response) {
  const [t] = response.translations;
  const timing = response.timing, ms = (x) => `${x.toFixed(1)} ms`;
  const encoder = timing.encode_ms === undefined ? "" : ` (encoder ${ms(timing.encode_ms)})`;
  renderTranslation(t.text, t.terms || []);
  $("meta").textContent = `score ${t.score.toFixed(3)} · ${ms(timing.total_ms)} total: `
    + `${ms(timing.queue_ms)} queued, ${ms(timing.decode_ms)} decoding${encoder}, `
    + `batch of ${timing.batch_size} · ${response.model}`;
  renderAlternatives(t.alternatives || []);
  renderHeatmap(t);
  renderAlignment(t);
  $("error").hidden = true;
  $("result").hidden = false;
  $("app").dataset.state = "done";
}

// The translation, its glossary terms marked at the spans the service gives.
function renderTranslation(text, terms) {
  const parts = [];
  let at = 0;
  for (const term of [...terms].sort((a, b) => a.target_start - b.target_start)) {
    parts.push(text.slice(at, term.target_start));
    const mark = el("mark", "term", text.slice(term.target_start, term.target_end));
    mark.title = `glossary: ${term.source} → ${term.target}`;
    parts.push(mark);
    at = term.target_end;
  }
  parts.push(text.slice(at));
  $("translation").replaceChildren(...parts);
}

function renderAlternatives(alternatives) {
  $("alternatives").replaceChildren(...alternatives.map((alt, i) => {
    const item = el("li", i === 0 ? "best" : "");
    item.append(el("span", "alt-text", alt.text), el("span", "score", alt.score.toFixed(3)));
    return item;
  }));
  $("alternatives-box").hidden = alternatives.length === 0;
}

// ---- wiring ---------------------------------------------------------------------------------

function updateChars() {
  const n = $("text").value.length;
  $("chars").textContent = `${n} character${n === 1 ? "" : "s"}`;
}

// A module runs once the document is parsed: the elements are there.
$("form").addEventListener("submit", translate);
$("text").addEventListener("input", updateChars);
$("key").addEventListener("change", loadModels);  // a new key may unlock /models
$("models").addEventListener("change", showModel);
$("text").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) $("form").requestSubmit();
});
initHeatmap();
updateChars();
loadModels();
