// The attention views: the heatmap (target tokens × source tokens, the picture of Bahdanau et
// al., 2015, fig. 3) with hover highlighting on both axes, and the word alignment table.
import { $, el } from "./dom.js";

const WORD_START = "\u2581"; // SentencePiece's word-start marker
const EOS = "</s>";
// A sequential blue scale, light (0) to dark (1); the legend ramp in style.css uses the same stops.
const STOPS = [[247, 251, 255], [198, 219, 239], [107, 174, 214], [33, 113, 181], [8, 48, 107]];

/** The color of an attention weight in [0, 1]: linear interpolation between STOPS. */
function color(weight) {
  const x = Math.min(Math.max(weight, 0), 1) * (STOPS.length - 1);
  const i = Math.min(Math.floor(x), STOPS.length - 2);
  const f = x - i;
  const rgb = STOPS[i].map((c, k) => Math.round(c + f * (STOPS[i + 1][k] - c)));
  return `rgb(${rgb.join(" ")})`;
}

/** A subword piece as a token element: the word-start marker is kept but dimmed. */
function token(piece, className) {
  const node = el("span", `tok ${className}${piece === EOS ? " eos" : ""}`);
  const startsWord = piece.startsWith(WORD_START);
  if (startsWord) node.append(el("span", "ws", WORD_START));
  node.append(startsWord ? piece.slice(1) : piece);
  return node;
}

/** Piece indices of each word, as service/alignment.py groups them (EOS belongs to none). */
function groupWords(pieces) {
  const words = [];
  pieces.forEach((piece, i) => {
    if (piece === EOS) return;
    if (!words.length || piece.startsWith(WORD_START)) words.push([i]);
    else words[words.length - 1].push(i);
  });
  return words;
}

// ---- heatmap: a CSS grid, one row per target token, one column per source token -------------

let current = null; // the translation on show: {source_tokens, target_tokens, attention}
const inMap = (selector) => $("heatmap").querySelector(selector);
const sourceTok = (c) => inMap(`.tok.src[data-col="${c}"]`);
const targetTok = (r) => inMap(`.tok.tgt[data-row="${r}"]`);
const cellAt = (r, c) => inMap(`.cell[data-row="${r}"][data-col="${c}"]`);
const argmax = (xs) => xs.indexOf(Math.max(...xs));

function withData(node, data) {
  Object.assign(node.dataset, data);
  return node;
}

export function renderHeatmap(t) {
  current = t;
  const source = t.source_tokens, target = t.target_tokens;
  const map = $("heatmap");
  if (!source.length || !target.length) {
    map.style.gridTemplateColumns = "";
    map.replaceChildren(el("p", "muted", "Nothing to show: the text is empty."));
    return;
  }
  map.style.gridTemplateColumns = `max-content repeat(${source.length}, var(--cell))`;
  const cell = Math.max(12, Math.min(30, Math.floor(640 / Math.max(source.length, target.length))));
  map.style.setProperty("--cell", `${cell}px`);
  const nodes = [el("div", "corner", "target ↓  source →")];
  source.forEach((piece, c) => nodes.push(withData(token(piece, "src"), { col: c })));
  t.attention.forEach((row, r) => {
    nodes.push(withData(token(target[r], "tgt"), { row: r }));
    row.forEach((weight, c) => {
      const node = withData(el("div", "cell"), { row: r, col: c });
      node.style.background = color(weight);
      node.title = `${target[r]} ← ${source[c]}: ${weight.toFixed(3)}`;
      nodes.push(node);
    });
  });
  map.replaceChildren(...nodes);
  clearHighlight();
}

/** Mark tokens on the other axis by their weight relative to the strongest one. */
function mark(selector, weights, key) {
  const max = Math.max(...weights) || 1;
  $("heatmap").querySelectorAll(selector).forEach((node) => {
    const w = weights[Number(node.dataset[key])] / max;
    node.style.setProperty("--w", w.toFixed(3));
    node.classList.toggle("attended", w >= 0.5);
  });
}

function clearHighlight() {
  const map = $("heatmap");
  map.classList.remove("hovering");
  map.querySelectorAll(".active, .attended, .focus").forEach((node) => {
    node.classList.remove("active", "attended", "focus");
  });
  $("readout").textContent = "\u00a0";
}

function highlight(nodes, className) {
  $("heatmap").classList.add("hovering");
  nodes.forEach((node) => node.classList.add(className));
}

/** A target token: the source tokens it attends to. */
function highlightTarget(r) {
  const row = current.attention[r], best = argmax(row);
  highlight([targetTok(r)], "active");
  mark(".tok.src", row, "col");
  $("readout").textContent = `target “${current.target_tokens[r]}” attends most to source `
    + `“${current.source_tokens[best]}” (${row[best].toFixed(3)})`;
}

/** A source token: the target tokens that attend to it. */
function highlightSource(c) {
  const column = current.attention.map((row) => row[c]), best = argmax(column);
  highlight([sourceTok(c)], "active");
  mark(".tok.tgt", column, "row");
  $("readout").textContent = `source “${current.source_tokens[c]}” is attended most by target `
    + `“${current.target_tokens[best]}” (${column[best].toFixed(3)})`;
}

function onHover(event) {
  const node = event.target.closest(".cell, .tok");
  clearHighlight();
  if (!node || !current) return;
  const { row, col } = node.dataset;
  if (node.classList.contains("cell")) {
    highlightTarget(Number(row));
    highlight([node], "focus");
    highlight([sourceTok(col)], "active");
    $("readout").textContent = `target “${current.target_tokens[row]}” ← source `
      + `“${current.source_tokens[col]}”: ${current.attention[row][col].toFixed(3)}`;
  } else if (row !== undefined) {
    highlightTarget(Number(row));
  } else {
    highlightSource(Number(col));
  }
}

// ---- word alignment: hovering a link highlights its pieces in the heatmap -------------------

export function renderAlignment(t) {
  const sourceWords = groupWords(t.source_tokens), targetWords = groupWords(t.target_tokens);
  $("alignment").replaceChildren(...(t.alignment || []).map((link) => {
    const meter = el("span", "meter");
    meter.append(el("span", "bar"));
    meter.firstChild.style.width = `${Math.round(100 * link.weight)}%`;
    const weight = el("td", "weight");
    weight.append(meter, link.weight.toFixed(2));
    const tr = el("tr");
    tr.append(el("td", "", link.target_word), el("td", "", link.source_word), weight);
    const rows = targetWords[link.target] || [], cols = sourceWords[link.source] || [];
    tr.addEventListener("mouseenter", () => {
      clearHighlight();
      highlight([...rows.map(targetTok), ...cols.map(sourceTok)], "active");
      highlight(rows.flatMap((r) => cols.map((c) => cellAt(r, c))), "focus");
    });
    tr.addEventListener("mouseleave", clearHighlight);
    return tr;
  }));
}

/** Hovering the heatmap highlights; leaving it clears. */
export function initHeatmap() {
  $("heatmap").addEventListener("mouseover", onHover);
  $("heatmap").addEventListener("mouseleave", clearHighlight);
}
