// The page controller: state <-> URL, requests (cancelled when stale), and drawing.

import { ALL_METRICS, ApiError, get, parseUnknownGene, populationPairs, queryPairs } from "./api.js";
import { composeFigure, saveBlob, svgString, svgToPng } from "./export.js";
import { FilterPanel, prettyColumn, subtypeGroups, usefulColumns } from "./filters.js";
import { compareLabels, el, fmtInt } from "./format.js";
import { GeneInput } from "./genes.js";
import { buildModel, toggleExpand } from "./model.js";
import { deTooltip, rankedTable, volcano } from "./compare.js";
import { MAX_VIOLIN_GENES } from "./distribution.js";
import { MARKERS_SHOWN, markerCards } from "./markers.js";
import { barChart, dotPlot, heatmap } from "./plots.js";
import { parseState, stateToSearch, withWhere } from "./state.js";
import { Tooltip, tooltipContent, violinTooltipContent } from "./tooltip.js";
import { violinPlot } from "./violin.js";

const $ = (id) => document.getElementById(id);

let meta = null;
let state = parseState(location.search);
let controller = null;
let panel = null;
let view = null; // what is drawn: {state, genes, chart, legend, model}
let selectionCells = null;
const unknown = new Map(); // lower-case name -> {gene, suggestions}
const tooltip = new Tooltip($("tooltip"));

const genes = new GeneInput($("genes"), {
  onChange: (list) => update({ genes: list }),
  suggest: (q, signal) => get("/api/v1/genes", [["q", q], ["limit", "12"]], signal).then((a) => a.genes || []),
});

function setStatus(status) {
  document.body.dataset.status = status;
}

// ------------------------------------------------------------------ state

function update(patch, { push = true } = {}) {
  state = { ...state, ...patch };
  const search = stateToSearch(state);
  if (push && search !== location.search) history.pushState(null, "", search);
  else history.replaceState(null, "", search);
  syncControls();
  refresh();
}

window.addEventListener("popstate", () => {
  state = parseState(location.search);
  syncControls();
  refresh();
});

function syncControls() {
  genes.set(state.genes, new Set([...unknown.keys()]));
  for (const b of $("plot-type").children) b.setAttribute("aria-checked", String(b.dataset.value === state.plot));
  for (const b of $("color").children) b.setAttribute("aria-checked", String(b.dataset.value === state.color));
  $("color-ctl").classList.toggle("disabled", ["bars", "violin", "de"].includes(state.plot));
  $("cmp-test").value = state.test;
  $("cmp-direction").value = state.direction;
  $("cmp-min-frac").value = String(state.minFrac);
  // A fraction from a link that the menu lacks is offered as it is.
  if ($("cmp-min-frac").value !== String(state.minFrac)) {
    $("cmp-min-frac").append(el("option", { value: String(state.minFrac) }, `in ≥ ${state.minFrac * 100}% of cells`));
    $("cmp-min-frac").value = String(state.minFrac);
  }
  // Compare and Markers test every gene between groups of one column: the split does
  // nothing there, and the row of colour and orders gives its room to the answer.
  const testing = state.plot === "de" || state.plot === "markers";
  $("compare-ctl").hidden = !testing;
  $("cmp-label").textContent = state.plot === "markers" ? "Markers of each" : "Compare";
  $("compare-ctl").querySelector(".cmp-sides").hidden = state.plot === "markers";
  $("cmp-direction").hidden = state.plot === "markers";
  $("split-ctl").classList.toggle("disabled", testing);
  $("order-row").hidden = testing;
  if (meta) {
    const cols = usefulColumns(meta).map((c) => c.name);
    for (const c of state.by) if (!cols.includes(c)) cols.push(c);
    fillSelect($("by-1"), [["", "(none)"], ...cols.map((c) => [c, prettyColumn(c)])], state.by[0] ?? "");
    fillSelect($("by-2"), [["", "—"], ...cols.filter((c) => c !== state.by[0]).map((c) => [c, prettyColumn(c)])], state.by[1] ?? "");
    $("by-2").disabled = !state.by.length;
    syncCompare(cols);
    // The ontology's tree: offered when the rows are one ontology-backed column.
    const first = meta.columns.find((c) => c.name === state.by[0]);
    $("tree-ctl").hidden = !(first?.ontology && state.by.length === 1 && !testing);
    $("tree").checked = state.rollup.includes(state.by[0]);
    $("rows").disabled = !$("tree-ctl").hidden && $("tree").checked;
  }
  const rowOpts = [["name", "by name"], ["cluster", "clustered"], ...state.genes.filter((g) => !unknown.has(g.toLowerCase())).map((g) => [`expr:${g}`, `by ${g} expression`])];
  if (!rowOpts.some(([v]) => v === state.rows)) rowOpts.push([state.rows, `by ${state.rows.slice(5)} expression`]);
  fillSelect($("rows"), rowOpts, state.rows);
  $("cols").value = state.cols;
  panel?.update(state);
  renderGeneMessage();
  markAdded();
}

// The Compare controls: the column, side 1's value, side 2 ("the rest" or a value).
function syncCompare(cols) {
  const column = testedColumn(state);
  fillSelect($("cmp-col"), cols.map((c) => [c, prettyColumn(c)]), column);
  const values = meta.columns.find((c) => c.name === column)?.values.map((v) => v.value).filter((v) => v !== "NA") ?? [];
  // An ontology-backed column also offers its terms' subtrees ("T cell (and subtypes)"):
  // chosen, the column is rolled up, so side 1 is the subtree (docs/ONTOLOGY.md).
  const groups = subtypeGroups(meta, column).map((g) => g.label).sort(compareLabels);
  const g1 = state.group1[0] ?? "";
  const rolled = state.rollup.includes(column) && groups.includes(g1);
  fillSelect($("cmp-g1"), [["", "choose a group…"], ...values.map((v) => [v, v]), ...groups.map((g) => [`sub:${g}`, `${g} (and subtypes)`])],
    rolled ? `sub:${g1}` : g1);
  const g2 = state.group2[0] ?? "rest";
  fillSelect($("cmp-g2"), [["rest", "all the others"], ...values.filter((v) => v !== state.group1[0]).map((v) => [v, v])], g2);
}
$("cmp-col").addEventListener("change", (e) => update({ compare: e.target.value, group1: [], group2: ["rest"] }));
// The column the Compare and Markers views test by.
const testedColumn = (s) => s.compare || s.by[0] || "cell_type";
$("cmp-g1").addEventListener("change", (e) => {
  const column = $("cmp-col").value;
  const sub = e.target.value.startsWith("sub:");
  const value = sub ? e.target.value.slice(4) : e.target.value;
  const rollup = state.rollup.filter((c) => c !== column);
  update({ compare: column, group1: value ? [value] : [], rollup: sub ? [...rollup, column] : rollup,
    group2: state.group2.filter((v) => v !== value).length ? state.group2.filter((v) => v !== value) : ["rest"] });
});
$("cmp-g2").addEventListener("change", (e) => update({ compare: $("cmp-col").value, group2: [e.target.value] }));
$("cmp-test").addEventListener("change", (e) => update({ test: e.target.value }));
$("cmp-direction").addEventListener("change", (e) => update({ direction: e.target.value }));
$("cmp-min-frac").addEventListener("change", (e) => update({ minFrac: Number(e.target.value) }));

function dePairs(s, format) {
  const pairs = [["compare", testedColumn(s)], ...s.group1.map((v) => ["group1", v]), ...s.group2.map((v) => ["group2", v]),
    ...populationPairs(s)];
  if (s.test !== "auto") pairs.push(["test", s.test]);
  if (s.direction !== "both") pairs.push(["direction", s.direction]);
  if (s.minFrac) pairs.push(["min_frac", String(s.minFrac)]);
  if (format) pairs.push(["format", format]);
  return pairs;
}

// /api/v1/markers: each value of the tested column against the rest of the population.
function markerPairs(s, format) {
  const pairs = [["column", testedColumn(s)], ...populationPairs(s), ["top", String(MARKERS_SHOWN)]];
  if (s.test !== "auto") pairs.push(["test", s.test]);
  if (s.minFrac) pairs.push(["min_frac", String(s.minFrac)]);
  if (format) pairs.push(["format", format]);
  return pairs;
}

// /api/v1/distribution: the population and split of /query, for the genes drawn.
function distPairs(s, list, format) {
  const pairs = [["genes", list.join(",")]];
  if (s.by.length) pairs.push(["by", s.by.join(",")]);
  pairs.push(...populationPairs(s));
  if (format) pairs.push(["format", format]);
  return pairs;
}

function fillSelect(select, options, value) {
  select.replaceChildren(...options.map(([v, label]) => el("option", { value: v }, label)));
  select.value = value;
}

for (const b of $("plot-type").children) b.addEventListener("click", () => update({ plot: b.dataset.value }));
for (const b of $("color").children) b.addEventListener("click", () => update({ color: b.dataset.value }));
$("by-1").addEventListener("change", (e) => {
  const first = e.target.value;
  update({ by: first ? [first, ...state.by.slice(1).filter((c) => c !== first)] : [] });
});
$("by-2").addEventListener("change", (e) => update({ by: e.target.value ? [state.by[0], e.target.value] : state.by.slice(0, 1) }));
$("rows").addEventListener("change", (e) => update({ rows: e.target.value }));
$("tree").addEventListener("change", (e) => {
  const column = state.by[0];
  const rollup = state.rollup.filter((c) => c !== column);
  update({ rollup: e.target.checked ? [...rollup, column] : rollup, expand: null });
});
$("cols").addEventListener("change", (e) => update({ cols: e.target.value }));
$("help-btn").addEventListener("click", () => {
  const help = $("help");
  help.hidden = !help.hidden;
  $("help-btn").setAttribute("aria-expanded", String(!help.hidden));
});
document.addEventListener("keydown", (e) => {
  if (e.key === "Escape") $("help").hidden = true;
});

// ------------------------------------------------------------------ requests

async function queryKnownGenes(s, signal) {
  let list = s.genes.filter((g) => !unknown.has(g.toLowerCase()));
  for (;;) {
    if (!list.length) return { answer: null, list };
    try {
      return { answer: await get("/api/v1/query", queryPairs(s, list, s.by), signal), list };
    } catch (e) {
      const u = e instanceof ApiError && e.status === 400 && parseUnknownGene(e.message);
      const name = u && list.find((g) => g.toLowerCase() === u.gene.toLowerCase());
      if (!name) throw e;
      unknown.set(name.toLowerCase(), u);
      list = list.filter((g) => g !== name);
      syncControls();
    }
  }
}

async function refresh() {
  controller?.abort();
  const ctl = (controller = new AbortController());
  const { signal } = ctl;
  const s = state;
  setBusy(true);
  const counts = get("/api/v1/counts", populationPairs(s), signal).then((c) => {
    if (signal.aborted) return;
    selectionCells = c.n_cells;
    panel.update(s, c);
  });
  counts.catch(() => {}); // reported through the query, or below when there are no genes
  try {
    if (s.plot === "de") {
      if (!s.group1.length) {
        await counts.catch(() => {});
        return showMessage("idle", "Choose two groups to compare",
          "Pick a column and a group in “Compare” above: its cells are compared with all the others (or with a second group) over every gene.");
      }
      const answer = await get("/api/v1/de", dePairs(s), signal);
      await counts.catch(() => {});
      if (signal.aborted) return;
      return drawDe(s, answer);
    }
    if (s.plot === "markers") {
      const answer = await get("/api/v1/markers", markerPairs(s), signal);
      await counts.catch(() => {});
      if (signal.aborted) return;
      return drawMarkers(s, answer);
    }
    if (!s.genes.length) {
      await counts;
      return showIntro(s);
    }
    const { answer, list } = await queryKnownGenes(s, signal);
    if (!answer) return showMessage("nogenes", "No gene to plot", "None of the genes typed above is in this store: pick one of the suggested names.");
    let donor = null;
    const dc = meta.donor_column;
    // A donor is a (dataset, donor) pair (docs/DE.md): donor labels repeat across studies.
    const extra = s.by.includes("dataset") ? [dc] : ["dataset", dc];
    if (s.plot === "bars" && dc && !s.by.includes(dc) && answer.rows.length && s.by.length + extra.length <= 4) {
      const a = await get("/api/v1/query", queryPairs(s, list, [...s.by, ...extra], ["n_cells", "mean"]), signal);
      donor = { answer: a, column: dc };
    }
    // Violins: the histograms of the first six genes; the query above gives the groups,
    // their order and the genes' flags, as for the other plots.
    let dist = null;
    if (s.plot === "violin" && answer.rows.length) {
      dist = await get("/api/v1/distribution", distPairs(s, list.slice(0, MAX_VIOLIN_GENES)), signal);
    }
    await counts.catch(() => {});
    if (signal.aborted) return;
    draw(s, answer, list, donor, dist);
  } catch (e) {
    if (e.name === "AbortError" || signal.aborted) return;
    showError(e, s);
  } finally {
    if (controller === ctl) setBusy(false);
  }
}

function setBusy(busy) {
  $("spinner").hidden = !busy;
  $("plot-area").classList.toggle("busy", busy);
  if (busy) setStatus("loading");
}

// ------------------------------------------------------------------ drawing

function units() {
  const t = new Set(meta.datasets.filter((d) => !state.datasets.length || state.datasets.includes(d.name)).map((d) => d.transform));
  if (t.size !== 1) return "per-dataset transforms";
  return { cp10k_log1p: "ln(CP10K+1)", log1p: "ln(x+1)", none: "values as stored" }[[...t][0]] ?? [...t][0];
}

function clearPlot() {
  $("chart").replaceChildren();
  $("footnote").replaceChildren();
  view = null;
  for (const id of ["dl-csv", "dl-svg", "dl-png"]) $(id).disabled = true;
  tooltip.hide();
}

function showMessage(status, title, text, action) {
  clearPlot();
  const m = $("message");
  m.replaceChildren(el("div", { class: "msg-title" }, title), el("p", {}, text), action ?? "");
  m.hidden = false;
  m.dataset.kind = status;
  $("summary").textContent = selectionCells != null ? `${fmtInt(selectionCells)} cells selected` : "";
  setStatus(status);
  document.body.dataset.rendered = stateToSearch(state);
}

function showIntro() {
  const examples = ["CD3E", "MS4A1", "LYZ", "NKG7", "CD14", "EPCAM"];
  const box = el("div", { class: "examples" });
  showMessage("idle", "Add genes to draw a plot", "Type gene symbols or ids in the box above (autocomplete helps), or start from a few common markers:", box);
  Promise.all(examples.map((g) => get("/api/v1/genes", [["q", g], ["limit", "1"]]).then((a) => a.genes?.[0]).catch(() => null))).then((found) => {
    const hits = found.filter((g, i) => g && (g.symbol || g.id).toLowerCase() === examples[i].toLowerCase()).map((g) => g.symbol || g.id);
    if (!hits.length) return;
    box.append(...hits.map((g) => el("button", { type: "button", class: "example", onclick: () => update({ genes: [...state.genes, g] }) }, g)),
      el("button", { type: "button", class: "example all", onclick: () => update({ genes: hits }) }, "all of these"));
  });
}

function showError(e, s) {
  if (e instanceof ApiError && e.kind === "network") {
    return showMessage("error", "Cannot reach the cellcube server",
      `The page could not talk to the server at ${location.host}. Check that “cellcube serve” is still running, then retry.`,
      el("button", { type: "button", class: "primary", onclick: () => (meta ? refresh() : start()) }, "Retry"));
  }
  const actions = [];
  if (s.plot === "de" && s.test !== "auto") actions.push(el("button", { type: "button", class: "primary", onclick: () => update({ test: "auto" }) }, "Use the automatic test"));
  if (s.where.length || s.datasets.length) actions.push(el("button", { type: "button", onclick: () => update({ where: [], datasets: [] }) }, "Clear filters"));
  showMessage("error", "The server could not answer this query", e.message, el("div", {}, ...actions));
}

function took(us) {
  if (us == null) return "";
  return el("span", { class: "took" }, ` · answered in ${us < 1000 ? `${us} µs` : `${(us / 1000).toFixed(1)} ms`}`);
}

function draw(s, answer, list, donor, dist) {
  if (!answer.rows.length) {
    const noCells = selectionCells === 0;
    return showMessage("empty", noCells ? "No cells match these filters" : "No measured cells",
      noCells ? "The filters on the left exclude every cell of the store. Untick a value or clear the filters."
        : "None of these genes was measured in the datasets selected on the left.",
      el("button", { type: "button", class: "primary", onclick: () => update({ where: [], datasets: [] }) }, "Clear filters"));
  }
  $("message").hidden = true;
  const model = buildModel(answer, s.plot === "bars" ? { ...s, color: "mean" } : s, donor);
  const u = units();
  const area = $("plot-area");
  const room = { width: area.clientWidth - 32, height: area.clientHeight - 28 };
  let fig, drawnGenes = model.genes, notes = answer.notes || [], left = [];
  if (s.plot === "violin") {
    const ids = new Set(dist.genes.map((g) => g.id));
    drawnGenes = model.geneOrder.filter((g) => ids.has(g.id)).slice(0, MAX_VIOLIN_GENES);
    left = list.slice(MAX_VIOLIN_GENES);
    notes = dist.notes || [];
    fig = violinPlot(model, dist, drawnGenes, u, room);
  } else {
    fig = { dot: dotPlot, heatmap, bars: barChart }[s.plot](model, s, u, room);
  }
  const tipOf = s.plot === "violin" ? violinTooltipContent : tooltipContent;
  const box = el("div", { class: "figure" }, el("div", { class: "chart-box" }, fig.chart), el("div", { class: "legend-box" }, fig.legend));
  const tooMany = left.length
    ? el("div", { class: "plot-notice", role: "status" }, `Violins are drawn for the first ${MAX_VIOLIN_GENES} genes; ${left.length} more (${left.join(", ")}) ${left.length === 1 ? "is" : "are"} not shown. Remove some genes, or switch to the dot plot to see them all.`)
    : null;
  $("chart").replaceChildren(...(tooMany ? [tooMany] : []), box);
  fig.chart.addEventListener("pointermove", (e) => {
    const r = fig.chart.getBoundingClientRect();
    const d = fig.hitTest(e.clientX - r.left, e.clientY - r.top);
    if (d) tooltip.show(tipOf(d, { plot: s.plot, color: s.color, units: u }), e.clientX, e.clientY);
    else tooltip.hide();
  });
  fig.chart.addEventListener("pointerleave", () => tooltip.hide());
  offerMarkers(fig.chart, model, s);

  const missing = drawnGenes.filter((g) => g.notMeasured.length);
  $("footnote").replaceChildren(...(tooMany ? [el("div", { class: "note" }, tooMany.textContent)] : []), ...missing.map((g) => el("div", {}, `* ${g.symbol} was not measured in ${g.notMeasured.join(", ")}: cells from ${g.notMeasured.length > 1 ? "those datasets" : "that dataset"} are not counted for it.`)),
    ...notes.map((n) => el("div", { class: "note" }, `Note: ${n}.`)));
  const groups = fig.groups ? fig.groups.length : model.rows.length;
  $("summary").replaceChildren(
    el("b", {}, fmtInt(selectionCells ?? 0)), ` of ${fmtInt(meta.n_cells)} cells · ${groups} group${groups === 1 ? "" : "s"} × ${drawnGenes.length} gene${drawnGenes.length === 1 ? "" : "s"}`,
    took((dist ?? answer).took_us));
  view = { state: s, genes: s.plot === "violin" ? list.slice(0, MAX_VIOLIN_GENES) : list, chart: fig.chart, legend: fig.legend, model };
  for (const id of ["dl-csv", "dl-svg", "dl-png"]) $(id).disabled = false;
  setStatus("ready");
  document.body.dataset.rendered = stateToSearch(s);
  document.body.dataset.groups = String(groups);
}

// A row label of a one-column split offers the markers of that group: the Compare view
// of that value against the rest (docs/DE.md).
// In the ontology's tree, a parent row's label collapses and expands its children.
function offerMarkers(chart, model, s) {
  if (s.by.length !== 1 || s.plot === "bars") return;
  const byLabel = new Map(model.rowOrder.map((r) => [r.axisLabel ?? r.label, r]));
  for (const t of chart.querySelectorAll('g[aria-label="y-axis tick label"] text')) {
    const row = byLabel.get(t.textContent);
    if (!row || row.values[0] === "NA") continue;
    if (model.tree && row.hasChildren) {
      t.classList.add("tree-toggle");
      t.setAttribute("data-term", row.termId ?? "");
      t.append(Object.assign(document.createElementNS("http://www.w3.org/2000/svg", "title"), { textContent: `${row.open ? "Collapse" : "Expand"} ${row.label}'s subtypes` }));
      t.addEventListener("click", () => update({ expand: toggleExpand(model, row) }));
      continue;
    }
    t.classList.add("markers-link");
    t.append(Object.assign(document.createElementNS("http://www.w3.org/2000/svg", "title"), { textContent: `Markers of ${row.label}: compare with the rest` }));
    t.addEventListener("click", () => update({ plot: "de", compare: s.by[0], group1: [row.values[0]], group2: ["rest"] }));
  }
}

const DE_TABLE_PX = 470;

function drawDe(s, answer) {
  if (!answer.rows.length) return showMessage("empty", "No gene to compare", "No gene was measured on both sides in the selected cells.");
  $("message").hidden = true;
  const area = $("plot-area");
  const room = { width: area.clientWidth - 32, height: area.clientHeight - 28 };
  const label = `${s.group1.join(", ")} vs ${s.group2[0] === "rest" ? "the rest" : s.group2.join(", ")}`;
  // The volcano and the ranked table side by side, each the plot area's full height (the
  // table scrolls on its own); below 900 px they stack and the table takes its rows' room.
  const wide = room.width >= 900;
  const fig = volcano(answer, { width: wide ? room.width - DE_TABLE_PX - 20 : room.width, height: wide ? room.height : Math.min(room.height, 560) }, label);
  const addGene = (g) => {
    if (!state.genes.some((x) => x.toLowerCase() === g.toLowerCase())) update({ genes: [...state.genes, g] }, { push: false });
  };
  const table = rankedTable(answer, addGene);
  const ran = el("div", { class: "de-test", "data-test": answer.test }, "Test: ", el("b", {}, testName(answer.test)),
    s.test === "auto" ? " (auto)" : "");
  const box = el("div", { class: `figure de-figure${wide ? " de-wide" : ""}`, style: wide ? `height: ${room.height}px` : "" },
    el("div", { class: "chart-box" }, fig.chart, fig.legend),
    el("div", { class: "de-side" }, ran, el("div", { class: "de-table-box" }, table)));
  $("chart").replaceChildren(box);
  fig.chart.addEventListener("pointermove", (e) => {
    const r = fig.chart.getBoundingClientRect();
    const d = fig.hitTest(e.clientX - r.left, e.clientY - r.top);
    if (d) tooltip.show(deTooltip(d), e.clientX, e.clientY);
    else tooltip.hide();
  });
  fig.chart.addEventListener("pointerleave", () => tooltip.hide());
  fig.chart.addEventListener("click", (e) => {
    const r = fig.chart.getBoundingClientRect();
    const d = fig.hitTest(e.clientX - r.left, e.clientY - r.top);
    if (d) addGene(d.symbol || d.gene);
  });
  $("footnote").replaceChildren(...answer.notes.map((n) => el("div", { class: "note" }, n)));
  const tested = answer.rows.length, sig = answer.rows.filter((r) => r.padj != null && r.padj <= 0.05).length;
  $("summary").replaceChildren(el("b", {}, fmtInt(selectionCells ?? 0)), ` cells selected · ${fmtInt(tested)} genes tested, ${fmtInt(sig)} with padj ≤ 0.05`,
    answer.took_us != null ? el("span", { class: "took" }, ` · answered in ${(answer.took_us / 1000).toFixed(1)} ms`) : "");
  view = { state: s, genes: [], chart: fig.chart, legend: fig.legend, de: true, test: answer.test };
  for (const id of ["dl-csv", "dl-svg", "dl-png"]) $(id).disabled = false;
  setStatus("ready");
  document.body.dataset.rendered = stateToSearch(s);
  document.body.dataset.groups = String(fig.points.length);
}

function drawMarkers(s, answer) {
  const column = testedColumn(s);
  if (!answer.rows.length) {
    return showMessage("empty", "No marker genes",
      `No ${prettyColumn(column)} of the selected cells has a gene higher than in the rest with padj ≤ 0.05. Widen the selection on the left, or pick another column.`);
  }
  $("message").hidden = true;
  const addGenes = (names) => {
    const have = new Set(state.genes.map((g) => g.toLowerCase()));
    const fresh = names.filter((g) => !have.has(g.toLowerCase()));
    if (fresh.length) update({ genes: [...state.genes, ...fresh] }, { push: false });
  };
  const { node, groups } = markerCards(answer, column, {
    onGenes: addGenes,
    onPlot: (names) => update({ plot: "dot", genes: names, by: [column], cols: "typed" }),
  });
  $("chart").replaceChildren(node);
  markAdded();
  // One note per group of values tested alike: folded, so that the cards keep the room.
  $("footnote").replaceChildren(answer.notes.length
    ? el("details", { class: "mk-notes" }, el("summary", {}, `How each value was tested (${answer.notes.length} note${answer.notes.length === 1 ? "" : "s"})`),
      ...answer.notes.map((n) => el("div", { class: "note" }, n)))
    : "");
  const values = meta.columns.find((c) => c.name === column)?.values.length ?? groups.length;
  $("summary").replaceChildren(el("b", {}, fmtInt(selectionCells ?? 0)), ` cells selected · markers of ${groups.length} of ${values} ${prettyColumn(column)} values`,
    answer.took_us != null ? el("span", { class: "took" }, ` · answered in ${(answer.took_us / 1000).toFixed(1)} ms`) : "");
  view = { state: s, genes: [], markers: true, test: answer.test };
  $("dl-csv").disabled = false;
  setStatus("ready");
  document.body.dataset.rendered = stateToSearch(s);
  document.body.dataset.groups = String(groups.length);
}

// The Markers view's genes already in the gene list are shown as added.
function markAdded() {
  const have = new Set(state.genes.map((g) => g.toLowerCase()));
  for (const b of document.querySelectorAll(".mk-gene")) b.classList.toggle("added", have.has(b.dataset.gene.toLowerCase()));
}

// The test an /api/v1/de answer ran (its "test" field, docs/DE.md), in words.
function testName(test) {
  return {
    cells: "Welch's t over cells",
    "donors-paired": "paired t over donors (pseudobulk)",
    "donors-unpaired": "Welch's t over donor means (pseudobulk)",
    wilcoxon: "Wilcoxon rank-sum over cells",
  }[test] ?? test;
}

function renderGeneMessage() {
  const box = $("gene-msg");
  const bad = state.genes.filter((g) => unknown.has(g.toLowerCase()));
  box.replaceChildren(...bad.map((g) => {
    const u = unknown.get(g.toLowerCase());
    return el("div", { class: "unknown-gene" }, "Unknown gene ", el("b", {}, g),
      u.suggestions.length ? [" — did you mean ", ...u.suggestions.flatMap((s, i) => [i ? ", " : "", el("button", { type: "button", class: "suggest", onclick: () => genes.replace(g, s) }, s)]), "?"] : ": not in this store.");
  }));
}

let resizeTimer = 0;
window.addEventListener("resize", () => {
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(() => view && refresh(), 150);
});

// ------------------------------------------------------------------ downloads

// Names that say what a download shows: CD3E_MS4A1_violin_by_cell_type.svg,
// de_cell_type_B-cell_vs_rest.csv.
const PLOT_NAMES = { dot: "dotplot", heatmap: "heatmap", bars: "bars", violin: "violin" };
function fileStem() {
  const clean = (x) => x.replace(/[^\w.-]+/g, "-");
  const s = view.state;
  if (view.markers) return clean(`markers_${testedColumn(s)}${s.test !== "auto" ? `_${s.test}` : ""}`);
  if (view.de) {
    const g2 = s.group2[0] === "rest" ? "rest" : s.group2.join("+");
    return clean(`de_${testedColumn(s)}_${s.group1.join("+")}_vs_${g2}${s.test !== "auto" ? `_${s.test}` : ""}`);
  }
  const g = view.genes.slice(0, 4).join("_") + (view.genes.length > 4 ? "_etc" : "");
  return clean(`${g || "cellcube"}_${PLOT_NAMES[s.plot] ?? s.plot}${s.by.length ? `_by_${s.by.join("_")}` : ""}`);
}

// The figure's caption: what it shows, the filters and datasets behind it, the store.
function caption() {
  const s = view.state;
  const parts = [];
  if (view.de) {
    const g2 = s.group2[0] === "rest" ? "the rest" : s.group2.join(" or ");
    parts.push(`${prettyColumn(testedColumn(s))}: ${s.group1.join(" or ")} against ${g2}`, `test: ${testName(view.test)}`);
  } else {
    parts.push(s.plot === "violin" ? `violins of ${view.genes.join(", ")}` : view.genes.join(", "));
    if (s.by.length) parts.push(`by ${s.by.map(prettyColumn).join(" · ")}`);
  }
  const byCol = new Map();
  for (const [c, v] of s.where) byCol.set(c, [...(byCol.get(c) ?? []), v]);
  for (const [c, vs] of byCol) parts.push(`${prettyColumn(c)}: ${vs.join(" or ")}`);
  parts.push(s.datasets.length ? `datasets: ${s.datasets.join(", ")}` : "all datasets");
  parts.push(meta.store);
  return parts.join("  ·  ");
}

async function download(kind) {
  if (!view) return;
  const button = $(`dl-${kind}`);
  button.disabled = true;
  try {
    if (kind === "csv" && view.markers) {
      const text = await get("/api/v1/markers", markerPairs(view.state, "csv"), undefined, { as: "text", cached: false });
      saveBlob(new Blob([text], { type: "text/csv;charset=utf-8" }), `${fileStem()}.csv`);
    } else if (kind === "csv" && view.de) {
      const text = await get("/api/v1/de", dePairs(view.state, "csv"), undefined, { as: "text", cached: false });
      saveBlob(new Blob([text], { type: "text/csv;charset=utf-8" }), `${fileStem()}.csv`);
    } else if (kind === "csv" && view.state.plot === "violin") {
      // The distribution rows behind the violins: split columns, gene, n_cells, zeros, bin_00…bin_63.
      const text = await get("/api/v1/distribution", distPairs(view.state, view.genes, "csv"), undefined, { as: "text", cached: false });
      saveBlob(new Blob([text], { type: "text/csv;charset=utf-8" }), `${fileStem()}.csv`);
    } else if (kind === "csv") {
      const text = await get("/api/v1/query", queryPairs(view.state, view.genes, view.state.by, ALL_METRICS, "csv"), undefined, { as: "text", cached: false });
      saveBlob(new Blob([text], { type: "text/csv;charset=utf-8" }), `${fileStem()}.csv`);
    } else {
      const fig = composeFigure(view.chart, view.legend, caption());
      const text = svgString(fig);
      if (kind === "svg") saveBlob(new Blob([text], { type: "image/svg+xml;charset=utf-8" }), `${fileStem()}.svg`);
      else saveBlob(await svgToPng(text, +fig.getAttribute("width"), +fig.getAttribute("height")), `${fileStem()}.png`);
    }
  } catch (e) {
    alert(`The download failed: ${e.message}`);
  } finally {
    button.disabled = !view;
  }
}
for (const kind of ["csv", "svg", "png"]) $(`dl-${kind}`).addEventListener("click", () => download(kind));

// ------------------------------------------------------------------ start

async function start() {
  setStatus("loading");
  try {
    meta = await get("/api/v1/meta", [], undefined, { cached: false });
  } catch (e) {
    $("store-info").textContent = "not connected";
    return showError(e instanceof ApiError ? e : new ApiError(String(e), { kind: "network" }), state);
  }
  document.title = `cellcube · ${meta.store}`;
  $("store-info").replaceChildren(el("b", {}, meta.store),
    ` ${meta.datasets.length} dataset${meta.datasets.length === 1 ? "" : "s"} · ${fmtInt(meta.n_cells)} cells · ${fmtInt(meta.n_genes)} genes`);
  panel = new FilterPanel($("filters"), meta, {
    onFilter: (column, values, { rollup } = {}) => update(column == null ? { where: [], datasets: [] }
      : { ...withWhere(state, column, values), ...(rollup && !state.rollup.includes(column) ? { rollup: [...state.rollup, column] } : {}) }),
    onDatasets: (values) => update({ datasets: values }),
  });
  // Drop what this store cannot have, so a link from another store still draws what it can.
  const known = new Set(meta.columns.map((c) => c.name));
  const backed = new Set(meta.columns.filter((c) => c.ontology).map((c) => c.name));
  state = { ...state, by: state.by.filter((c) => known.has(c)), where: state.where.filter(([c]) => known.has(c)),
    rollup: state.rollup.filter((c) => backed.has(c)) };
  history.replaceState(null, "", stateToSearch(state));
  syncControls();
  refresh();
}

start();
