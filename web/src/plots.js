// The three figures, drawn with Observable Plot as SVG: dot plot (one <circle> per
// group × gene), heatmap and bar chart with error bars. Each returns the chart, its
// legend (our own small SVG, so the exported figure is one self-contained file) and a
// hit test that maps a pointer position to the datum under it, for the tooltip.

import * as Plot from "@observablehq/plot";
import { interpolateRgbBasis } from "d3";
import { fmtInt, fmtNum } from "./format.js";

export const FONT_FAMILY =
  'Inter, "Segoe UI", -apple-system, BlinkMacSystemFont, Roboto, "Helvetica Neue", Lato, Arial, system-ui, sans-serif';
const FONT = `12px ${FONT_FAMILY}`;
const RAMP = interpolateRgbBasis(["#eef1f8", "#c3cdf0", "#8b98dc", "#5a5fb8", "#3a2e86", "#1f1147"]);
export const INK = "#1f2430";
export const MUTED = "#6b7280";
const SVGNS = "http://www.w3.org/2000/svg";

let ctx;
export function textWidth(text, font = FONT) {
  ctx ??= document.createElement("canvas").getContext("2d");
  ctx.font = font;
  return ctx.measureText(text).width;
}

export function truncate(text, maxPx) {
  if (textWidth(text) <= maxPx) return text;
  let lo = 0, hi = text.length;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (textWidth(text.slice(0, mid) + "…") <= maxPx) lo = mid;
    else hi = mid - 1;
  }
  return text.slice(0, lo) + "…";
}

export function geneLabel(g) {
  return g.notMeasured.length ? `${g.symbol} *` : g.symbol;
}

// The room a dendrogram takes beside (rows) or below (genes) the heatmap.
const DENDRO_ROOM = 56;

// Sizes shared by the dot plot and the heatmap; `dendrograms` leaves room for the
// clustered orders' trees.
function gridLayout(model, { colW, rowH, dendrograms = false }) {
  const rows = model.rowOrder, genes = model.geneOrder;
  const labelMax = 330;
  const rowLabels = new Map(rows.map((r) => [r.key, truncate(r.axisLabel ?? r.label, labelMax)]));
  const marginLeft = Math.ceil(Math.max(40, ...[...rowLabels.values()].map((l) => textWidth(l)))) + 14;
  const geneLabels = new Map(genes.map((g) => [g.id, truncate(geneLabel(g), 130)]));
  const widest = Math.max(...[...geneLabels.values()].map((l) => textWidth(l)));
  const rotate = widest > colW - 4;
  const marginTop = rotate ? Math.ceil(widest) + 16 : 30;
  const marginRight = 16 + (dendrograms && model.rowTree ? DENDRO_ROOM : 0);
  const marginBottom = 12 + (dendrograms && model.geneTree ? DENDRO_ROOM : 0);
  return {
    rows, genes, rowLabels, geneLabels, rotate, marginLeft, marginTop, marginRight, marginBottom,
    width: marginLeft + genes.length * colW + marginRight,
    height: marginTop + rows.length * rowH + marginBottom,
  };
}

// Blocks are worth marking when splitting by two columns and some block has several rows.
function showBlocks(model) {
  if (!model.twoLevel) return false;
  const seen = new Set();
  return model.rowOrder.some((r) => seen.size === seen.add(r.block).size);
}

// Alternating bands behind the rows of every other block (first split column) when splitting by two.
export function blockBands(model) {
  if (!showBlocks(model)) return [];
  const out = [];
  let block = null, odd = true;
  for (const r of model.rowOrder) {
    if (r.block !== block) { block = r.block; odd = !odd; }
    if (odd) out.push(r);
  }
  return out;
}

// A line above the first row of every block but the first (two split columns).
export function blockRules(model) {
  if (!showBlocks(model)) return [];
  return model.rowOrder.filter((r, i, rows) => i > 0 && rows[i - 1].block !== r.block);
}

function gridPlot(model, layout, marks, rowH) {
  const { rows, genes, rowLabels, geneLabels, rotate, marginLeft, marginTop, marginRight, marginBottom, width, height } = layout;
  return Plot.plot({
    width, height, marginLeft, marginTop, marginRight, marginBottom,
    style: { fontFamily: FONT_FAMILY, fontSize: "12px", color: INK, background: "white", overflow: "visible" },
    x: {
      type: "band", domain: genes.map((g) => g.id), axis: "top", label: null, padding: 0, tickSize: 0,
      tickFormat: (id) => geneLabels.get(id), tickRotate: rotate ? -90 : 0,
    },
    y: { type: "band", domain: rows.map((r) => r.key), label: null, padding: 0, tickSize: 0, tickFormat: (k) => rowLabels.get(k) },
    r: { type: "identity" },
    color: { type: "identity" },
    marks: [
      Plot.cell(blockBands(model), { y: "key", fill: "#f3f5fa" }),
      Plot.gridX({ stroke: "#e6e8ee", strokeOpacity: 1 }),
      Plot.gridY({ stroke: "#eef0f4", strokeOpacity: 1 }),
      ...marks,
      Plot.ruleY(blockRules(model), { y: "key", dy: -rowH / 2, stroke: "#b8bfce", strokeWidth: 1 }),
    ],
  });
}

// The clustered orders' dendrograms, drawn onto a heatmap: the rows' to the right of
// the cells, the genes' below them; a merge sits at its height over the root's.
function drawDendrograms(chart, model, layout) {
  const sx = chart.scale("x"), sy = chart.scale("y");
  const right = layout.width - layout.marginRight + 6, bottom = layout.height - layout.marginBottom + 6;
  const depth = DENDRO_ROOM - 12;
  if (model.rowTree) {
    const at = (key) => sy.apply(key) + sy.bandwidth / 2;
    chart.append(dendrogram(model.rowTree, at, (along, h) => [right + h * depth, along], "rows"));
  }
  if (model.geneTree) {
    const at = (id) => sx.apply(id) + sx.bandwidth / 2;
    chart.append(dendrogram(model.geneTree, at, (along, h) => [along, bottom + h * depth], "genes"));
  }
}

// One dendrogram as a <path> of elbows: leaves at their band's centre (`at`), merges at
// the mean of their children; `point(along, h)` places a position and a height in 0..1.
function dendrogram(tree, at, point, which) {
  const top = tree.height || 1;
  const parts = [];
  const place = (node) => {
    if (node.leaf != null) return { along: at(node.leaf), h: 0 };
    const a = place(node.left), b = place(node.right);
    const h = node.height / top;
    const [ax, ay] = point(a.along, a.h), [px, py] = point(a.along, h), [qx, qy] = point(b.along, h), [bx, by] = point(b.along, b.h);
    parts.push(`M${ax},${ay}L${px},${py}L${qx},${qy}L${bx},${by}`);
    return { along: (a.along + b.along) / 2, h };
  };
  place(tree);
  return svg("path", { class: `dendrogram dendrogram-${which}`, d: parts.join(""), fill: "none", stroke: MUTED, "stroke-width": 1 });
}

function bandAt(scale, px) {
  const bw = scale.bandwidth ?? 0;
  const step = scale.step ?? bw;
  const pad = (step - bw) / 2;
  for (const v of scale.domain) {
    const start = scale.apply(v);
    if (px >= start - pad && px < start + bw + pad) return v;
  }
  return null;
}

function gridHitTest(chart, model) {
  const sx = chart.scale("x"), sy = chart.scale("y");
  return (px, py) => {
    const id = bandAt(sx, px), key = bandAt(sy, py);
    if (id == null || key == null) return null;
    const row = model.rows.find((r) => r.key === key);
    return row?.cells.get(id) ?? { row, gene: model.genes.find((g) => g.id === id), missing: true };
  };
}

export function colorDomain(model, state) {
  if (state.color === "scaled") return [0, 1];
  const max = Math.max(0, ...model.data.map((d) => d.v));
  return [0, max > 0 ? max : 1];
}

// Row and column sizes that use the room there is, within readable bounds.
function cellSize(model, room, { max = 30, extraW = 6 } = {}) {
  const n = Math.max(1, model.rowOrder.length), m = Math.max(1, model.genes.length);
  const rowH = Math.max(20, Math.min(max, Math.floor((room.height - 110) / n)));
  const colW = Math.max(22, Math.min(rowH + extraW, Math.floor((room.width - 360) / m)));
  return { rowH, colW };
}

// Groups with fewer cells than this get a dashed ring: their fraction and mean rest on
// a handful of cells, so a big dark dot there says little.
export const FEW_CELLS = 10;
const FEW_STROKE = "#b45309";

function fewCellsMark(model, r) {
  return Plot.dot(model.data.filter((d) => d.n_cells < FEW_CELLS), {
    x: (d) => d.gene.id, y: (d) => d.row.key, r, fill: "none",
    stroke: FEW_STROKE, strokeWidth: 1.1, strokeDasharray: "2,1.6", className: "few-cells",
  });
}

function fewCellsLegend(g) {
  let y = title(g, `Fewer than ${FEW_CELLS} cells`, "a noisy estimate (dashed ring)");
  g.append(svg("circle", { cx: 10, cy: y + 8, r: 7, fill: "none", stroke: FEW_STROKE, "stroke-width": 1.1, "stroke-dasharray": "2,1.6" }));
  return y + 18;
}

export function dotPlot(model, state, units, room) {
  const { rowH, colW } = cellSize(model, room);
  const maxR = Math.min(colW, rowH) / 2 - 1;
  const [, cmax] = colorDomain(model, state);
  const layout = gridLayout(model, { colW, rowH });
  const chart = gridPlot(model, layout, [
    Plot.dot(model.data, {
      x: (d) => d.gene.id,
      y: (d) => d.row.key,
      // Every returned (group, gene) gets a circle; 0% expressing is a speck, not nothing.
      r: (d) => Math.max(1.1, maxR * Math.sqrt(d.frac ?? 0)),
      fill: (d) => RAMP(d.v / cmax),
      stroke: "#1f1147",
      strokeOpacity: 0.28,
      strokeWidth: 0.6,
    }),
    fewCellsMark(model, maxR),
  ], rowH);
  chart.classList.add("chart", "chart-dot");
  const few = model.data.some((d) => d.n_cells < FEW_CELLS);
  const legend = makeLegend([sizeLegend(maxR), colorLegend(state, cmax, units), ...(few ? [fewCellsLegend] : [])]);
  return { chart, legend, hitTest: gridHitTest(chart, model) };
}

export function heatmap(model, state, units, room) {
  const [, cmax] = colorDomain(model, state);
  const { rowH, colW } = cellSize(model, room, { max: 26, extraW: 10 });
  const layout = gridLayout(model, { colW, rowH, dendrograms: true });
  const chart = gridPlot(model, layout, [
    Plot.cell(model.data, {
      x: (d) => d.gene.id, y: (d) => d.row.key, fill: (d) => RAMP(d.v / cmax), inset: 0.5,
    }),
    fewCellsMark(model, Math.min(colW, rowH) / 2 - 3),
  ], rowH);
  chart.classList.add("chart", "chart-heatmap");
  drawDendrograms(chart, model, layout);
  const few = model.data.some((d) => d.n_cells < FEW_CELLS);
  const legend = makeLegend([colorLegend(state, cmax, units), ...(few ? [fewCellsLegend] : [])]);
  return { chart, legend, hitTest: gridHitTest(chart, model) };
}

export function barChart(model, state, units, room) {
  const rows = model.rowOrder, genes = model.geneOrder;
  const rowLabels = new Map(rows.map((r) => [r.key, truncate(r.axisLabel ?? r.label, 300)]));
  const marginLeft = Math.ceil(Math.max(40, ...[...rowLabels.values()].map((l) => textWidth(l)))) + 14;
  const facetW = Math.max(72, Math.min(240, Math.floor((room.width - 214 - marginLeft - 24) / Math.max(1, genes.length))));
  const rowH = rows.length > 40 ? 18 : 24;
  const err = model.data.filter((d) => d.se != null && d.mean != null).map((d) => ({ ...d, lo: Math.max(0, d.mean - d.se), hi: d.mean + d.se }));
  const donors = model.data.flatMap((d) => (d.donors || []).map((x) => ({ ...x, gene: d.gene, row: d.row })));
  const xmax = Math.max(0.1, ...model.data.map((d) => d.mean ?? 0), ...err.map((d) => d.hi), ...donors.map((d) => d.mean));
  const fx = (d) => d.gene.id, y = (d) => d.row.key;
  const geneLabels = new Map(genes.map((g) => [g.id, truncate(geneLabel(g), facetW - 10)]));
  const chart = Plot.plot({
    width: marginLeft + facetW * genes.length + 20,
    height: 40 + rows.length * rowH + 40,
    marginLeft, marginTop: 40, marginBottom: 40, marginRight: 20,
    style: { fontFamily: FONT_FAMILY, fontSize: "12px", color: INK, background: "white", overflow: "visible" },
    fx: { domain: genes.map((g) => g.id), axis: "top", label: null, padding: 0.14, tickFormat: (id) => geneLabels.get(id) },
    y: { type: "band", domain: rows.map((r) => r.key), label: null, padding: 0.18, tickSize: 0, tickFormat: (k) => rowLabels.get(k) },
    x: { domain: [0, xmax * 1.04], label: `mean ${units} →`, ticks: 3, grid: true, nice: false },
    marks: [
      Plot.cell(blockBands(model), { y: "key", fill: "#f3f5fa", inset: -2 }),
      Plot.barX(model.data, { fx, y, x: (d) => d.mean ?? 0, fill: "#8b98dc" }),
      Plot.ruleY(err, { fx, y, x1: "lo", x2: "hi", stroke: INK, strokeWidth: 1.2 }),
      Plot.tickX(err, { fx, y, x: "lo", stroke: INK, strokeWidth: 1.2, insetTop: rowH * 0.25, insetBottom: rowH * 0.25 }),
      Plot.tickX(err, { fx, y, x: "hi", stroke: INK, strokeWidth: 1.2, insetTop: rowH * 0.25, insetBottom: rowH * 0.25 }),
      Plot.dot(donors, { fx, y, x: "mean", r: 2.4, fill: "#111827", fillOpacity: 0.6, stroke: "white", strokeWidth: 0.6 }),
      Plot.ruleX([0], { stroke: MUTED }),
    ],
  });
  chart.classList.add("chart", "chart-bars");
  const legend = makeLegend([barLegend(model)]);
  return { chart, legend, hitTest: facetHitTest(chart, model) };
}

function facetHitTest(chart, model) {
  const sy = chart.scale("y");
  const sfx = chart.scale("fx");
  return (px, py) => {
    const key = bandAt(sy, py);
    if (key == null) return null;
    let id = null;
    for (const gid of sfx.domain) {
      const start = sfx.apply(gid);
      if (px >= start && px < start + sfx.bandwidth) id = gid;
    }
    if (id == null) return null;
    const row = model.rows.find((r) => r.key === key);
    return row?.cells.get(id) ?? null;
  };
}

// ---------------------------------------------------------------- legends

export function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text != null) node.textContent = text;
  return node;
}

export function makeLegend(parts) {
  const width = 196;
  const root = svg("svg", { class: "legend", width, "font-family": FONT_FAMILY, "font-size": 12, fill: INK });
  let y = 6;
  for (const part of parts) {
    const g = svg("g", { transform: `translate(8,${y})` });
    const h = part(g);
    root.append(g);
    y += h + 22;
  }
  root.setAttribute("height", y);
  root.setAttribute("viewBox", `0 0 ${width} ${y}`);
  return root;
}

// The legend's text column: 180 px of its 196, at the small size of its notes.
const LEGEND_TEXT_PX = 180;
const SMALL_FONT = `11px ${FONT_FAMILY}`;

// Greedy word wrap to lines no wider than maxPx (a word wider than that gets a line).
export function wrapText(text, maxPx = LEGEND_TEXT_PX, font = SMALL_FONT) {
  const lines = [];
  let line = "";
  for (const word of text.split(/\s+/).filter(Boolean)) {
    const next = line ? `${line} ${word}` : word;
    if (line && textWidth(next, font) > maxPx) {
      lines.push(line);
      line = word;
    } else {
      line = next;
    }
  }
  if (line) lines.push(line);
  return lines;
}

// Muted, wrapped lines of a legend from y on (the baseline of the first); returns the
// y below the last.
export function notes(g, y, text) {
  for (const line of wrapText(text)) {
    g.append(svg("text", { x: 0, y, fill: MUTED, "font-size": 11 }, line));
    y += 15;
  }
  return y;
}

// A legend part's title and its muted subtitle, wrapped; returns the height used.
export function title(g, text, sub) {
  g.append(svg("text", { x: 0, y: 12, "font-weight": 600 }, text));
  return sub ? notes(g, 28, sub) - 5 : 22;
}

function sizeLegend(maxR) {
  return (g) => {
    let y = title(g, "Fraction of cells", "expressing the gene (dot size)");
    const steps = [0.2, 0.4, 0.6, 0.8, 1];
    steps.forEach((f, i) => {
      const cx = 14 + i * 34;
      g.append(svg("circle", { cx, cy: y + maxR, r: maxR * Math.sqrt(f), fill: "#9aa3b5", stroke: "#4b5563", "stroke-opacity": 0.4 }));
      g.append(svg("text", { x: cx, y: y + 2 * maxR + 16, "text-anchor": "middle", fill: MUTED, "font-size": 11 }, `${f * 100}%`));
    });
    return y + 2 * maxR + 18;
  };
}

let gradientId = 0;
function colorLegend(state, cmax, units) {
  return (g) => {
    const scaled = state.color === "scaled";
    let y = title(g, scaled ? "Scaled mean" : "Mean expression", scaled ? "per gene: 0 = lowest, 1 = highest group" : units);
    const id = `cc-ramp-${++gradientId}`;
    const grad = svg("linearGradient", { id, x1: 0, x2: 1, y1: 0, y2: 0 });
    for (let i = 0; i <= 10; i++) grad.append(svg("stop", { offset: `${i * 10}%`, "stop-color": RAMP(i / 10) }));
    const defs = svg("defs");
    defs.append(grad);
    g.append(defs);
    const w = 160;
    g.append(svg("rect", { x: 0, y, width: w, height: 10, fill: `url(#${id})`, rx: 2 }));
    const ticks = [0, cmax / 2, cmax];
    ticks.forEach((t, i) => {
      const x = (i / 2) * w;
      g.append(svg("line", { x1: x, x2: x, y1: y + 10, y2: y + 14, stroke: MUTED }));
      g.append(svg("text", { x, y: y + 26, "text-anchor": i === 0 ? "start" : i === 2 ? "end" : "middle", fill: MUTED, "font-size": 11 }, fmtNum(t)));
    });
    return y + 28;
  };
}

function barLegend(model) {
  return (g) => {
    let y = title(g, "Bars", "mean over all cells of the group");
    g.append(svg("rect", { x: 0, y: y, width: 46, height: 12, fill: "#8b98dc" }));
    g.append(svg("line", { x1: 34, x2: 58, y1: y + 6, y2: y + 6, stroke: INK, "stroke-width": 1.2 }));
    y += 28;
    y = notes(g, y, barErrorText(model));
    return y - 10;
  };
}

// What the error bars and dots of a bar chart describe, in the legend's words: the bar
// is always every cell of the group; with donors, the dots and error bars cover only the
// cells that have one, and the legend says how many those are when it is not all of them.
export function barErrorText(model) {
  const donorMode = model.data.some((d) => d.seKind === "donors");
  if (!donorMode) {
    return model.noDonors
      ? "Error bar: standard error across cells (sd / √n): no cell here has a donor value."
      : "Error bar: standard error across cells (sd / √n).";
  }
  let text = "Error bar: standard error of the per-donor means (k ≥ 2). ● one donor's mean.";
  const c = model.donorCoverage;
  if (c?.partial) {
    text += ` Dots and error bars cover only the cells with a donor: ${fmtInt(c.donorCells)} of the ${fmtInt(c.cells)} cells the bars average`;
    text += c.without.length ? ` (${c.without.join(", ")} ${c.without.length === 1 ? "has" : "have"} no donors).` : ".";
  }
  return text;
}
