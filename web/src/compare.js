// The Compare view (docs/DE.md): differential expression between two sides of the selected
// cells, as a volcano plot (one <circle> per gene with a padj: x = logfc, y = -log10
// padj; padj = 0 is drawn on the top edge, beyond the scale) beside the ranked table.
// Clicking a gene (circle or row) adds it to the gene list.

import * as Plot from "@observablehq/plot";
import { el, fmtNum } from "./format.js";
import { FONT_FAMILY, svg, textWidth } from "./plots.js";

const UP = "#b4232f";
const DOWN = "#2b5cb8";
const FLAT = "#9aa3b5";
const SIGNIFICANT = 0.05;

// The rows of an /api/v1/de answer that the volcano draws, with their y.
export function volcanoPoints(answer) {
  const rows = answer.rows.filter((r) => r.padj != null && r.logfc != null);
  const finite = rows.filter((r) => r.padj > 0).map((r) => -Math.log10(r.padj));
  const top = Math.max(1, ...finite) * 1.05;
  return {
    top,
    points: rows.map((r) => {
      const beyond = !(r.padj > 0);
      const side = r.padj <= SIGNIFICANT ? (r.logfc > 0 ? "up" : "down") : "flat";
      return { ...r, y: beyond ? top : -Math.log10(r.padj), beyond, side };
    }),
  };
}

// The genes the volcano labels: the first `perSide` significant genes higher on each
// side, in the answer's order (padj, then |logfc|).
export function labelCandidates(points, perSide = 8) {
  const up = points.filter((p) => p.side === "up").slice(0, perSide);
  const down = points.filter((p) => p.side === "down").slice(0, perSide);
  // Alternate the sides, so each gets its best genes placed before the other's weaker ones.
  const out = [];
  for (let i = 0; i < Math.max(up.length, down.length); i++) out.push(...(up[i] ? [up[i]] : []), ...(down[i] ? [down[i]] : []));
  return out;
}

// Where each candidate's label goes, without two labels overlapping, a label covering a
// labelled dot, or a label leaving `bounds` ({x0, y0, x1, y1}, pixels). Candidates carry
// {px, py} (their dot's centre) and text; measure(text) gives its width in pixels. Tried
// in order: beside, above and below the dot, then further out with a leader line; a
// label with no free place is left out. Returns [{candidate, x, y, anchor, box, leader}],
// where (x, y) is the text's anchor at its vertical centre.
export function placeLabels(candidates, bounds, measure, { height = 13, dotR = 4 } = {}) {
  const placed = [];
  const dots = candidates.map((c) => ({ x0: c.px - dotR, y0: c.py - dotR, x1: c.px + dotR, y1: c.py + dotR }));
  const overlaps = (a, b) => a.x0 < b.x1 && b.x0 < a.x1 && a.y0 < b.y1 && b.y0 < a.y1;
  const inside = (b) => b.x0 >= bounds.x0 && b.x1 <= bounds.x1 && b.y0 >= bounds.y0 && b.y1 <= bounds.y1;
  for (const c of candidates) {
    const w = measure(c.text);
    const right = c.side !== "down"; // up genes' labels prefer the right, down genes' the left
    const spots = [];
    for (const gap of [dotR + 3, dotR + 16, dotR + 30]) {
      const beside = [[gap, 0, "start"], [-gap, 0, "end"]];
      if (!right) beside.reverse();
      spots.push(...beside, [0, -gap - height / 2, "middle"], [0, gap + height / 2, "middle"],
        [gap * 0.8, -gap * 0.8, "start"], [-gap * 0.8, -gap * 0.8, "end"], [gap * 0.8, gap * 0.8, "start"], [-gap * 0.8, gap * 0.8, "end"]);
    }
    for (const [dx, dy, anchor] of spots) {
      const x = c.px + dx, y = c.py + dy;
      const x0 = anchor === "start" ? x : anchor === "end" ? x - w : x - w / 2;
      const box = { x0, y0: y - height / 2, x1: x0 + w, y1: y + height / 2 };
      if (!inside(box) || placed.some((p) => overlaps(p.box, box)) || dots.some((d) => overlaps(d, box))) continue;
      placed.push({ candidate: c, x, y, anchor, box, leader: Math.hypot(dx, dy) > dotR + 10 });
      break;
    }
  }
  return placed;
}

const LABEL_FONT = `11px ${FONT_FAMILY}`;

export function volcano(answer, room, label, { measure = (t) => textWidth(t, LABEL_FONT) } = {}) {
  const { top, points } = volcanoPoints(answer);
  const width = Math.max(360, Math.min(room.width, 760));
  const legend = volcanoLegend(width, measure);
  const height = Math.max(300, Math.min(room.height - +legend.getAttribute("height") - 14, 620));
  const xmax = Math.max(0.5, ...points.map((p) => Math.abs(p.logfc))) * 1.05;
  const margin = { left: 56, bottom: 44, top: 20, right: 16 };
  const chart = Plot.plot({
    width, height, marginLeft: margin.left, marginBottom: margin.bottom, marginTop: margin.top, marginRight: margin.right,
    style: { fontFamily: FONT_FAMILY, fontSize: "12px", background: "white" },
    x: { domain: [-xmax, xmax], label: `log fold change (${label})`, grid: true },
    y: { domain: [0, top], label: "−log10 adjusted p", grid: true },
    marks: [
      Plot.ruleX([0], { stroke: "#d5d9e2" }),
      Plot.ruleY([-Math.log10(SIGNIFICANT)], { stroke: "#d5d9e2", strokeDasharray: "4 3" }),
      Plot.dot(points, {
        x: "logfc", y: "y", r: (p) => (p.beyond ? 4 : 3),
        fill: (p) => ({ up: UP, down: DOWN, flat: FLAT })[p.side],
        fillOpacity: 0.75, stroke: (p) => (p.beyond ? "#111827" : "white"), strokeWidth: 0.6,
      }),
    ],
  });
  chart.setAttribute("class", "volcano");
  const sx = chart.scale("x"), sy = chart.scale("y");
  const candidates = labelCandidates(points).map((p) => ({ ...p, text: p.symbol || p.gene, px: sx.apply(p.logfc), py: sy.apply(p.y) }));
  const bounds = { x0: margin.left, y0: 2, x1: width - 2, y1: height - margin.bottom };
  chart.append(labelLayer(placeLabels(candidates, bounds, measure)));
  const hitTest = (px, py) => {
    let best = null, bestD = 64; // within 8 px
    for (const p of points) {
      const dx = sx.apply(p.logfc) - px, dy = sy.apply(p.y) - py;
      const d = dx * dx + dy * dy;
      if (d < bestD) {
        best = p;
        bestD = d;
      }
    }
    return best;
  };
  return { chart, legend, hitTest, points };
}

// The placed labels as SVG: the gene's name, and a thin line to its dot when set apart.
function labelLayer(placed) {
  const g = svg("g", { class: "volcano-labels", "font-size": 11, fill: "#1f2430" });
  for (const p of placed) {
    if (p.leader) {
      const tx = Math.min(Math.max(p.candidate.px, p.box.x0), p.box.x1), ty = Math.min(Math.max(p.candidate.py, p.box.y0), p.box.y1);
      g.append(svg("line", { x1: p.candidate.px, y1: p.candidate.py, x2: tx, y2: ty, stroke: "#9aa3b5", "stroke-width": 0.8 }));
    }
    g.append(svg("text", { class: "volcano-label", x: p.x, y: p.y, dy: "0.35em", "text-anchor": p.anchor, "data-gene": p.candidate.gene }, p.candidate.text));
  }
  return g;
}

// The volcano's legend: one row of keys under the plot, wrapping at its width, as SVG
// so that an exported figure carries it (it goes below the plot there too).
function volcanoLegend(width, measure) {
  const keys = [
    { fill: UP, text: "higher on side 1" }, { fill: DOWN, text: "higher on side 2" },
    { fill: FLAT, text: `padj > ${SIGNIFICANT}` }, { fill: FLAT, stroke: "#111827", text: "padj = 0: beyond the scale, on the top edge" },
  ];
  const root = svg("svg", { class: "legend de-legend", width, "font-family": FONT_FAMILY, "font-size": 11, fill: "#4b5563", "data-place": "below" });
  let x = 8, y = 12;
  for (const k of keys) {
    const w = 14 + measure(k.text) + 16;
    if (x > 8 && x + w > width) {
      x = 8;
      y += 18;
    }
    root.append(svg("circle", { cx: x + 4, cy: y - 4, r: 4, fill: k.fill, "fill-opacity": 0.75, stroke: k.stroke ?? "none", "stroke-width": 0.8 }));
    root.append(svg("text", { x: x + 13, y }, k.text));
    x += w;
  }
  root.setAttribute("height", y + 8);
  return root;
}

// The ranked table: the first `limit` rows in the answer's order (padj, then |logfc|).
export function rankedTable(answer, onGene, limit = 60) {
  const head = ["gene", "logfc", "padj", "mean 1", "mean 2", "frac 1", "frac 2"];
  const body = answer.rows.slice(0, limit).map((r) =>
    el("tr", { class: "de-row", title: "Add this gene to the plot", onclick: () => onGene(r.symbol || r.gene) },
      el("td", {}, r.symbol || r.gene),
      ...[r.logfc, r.padj, r.mean1, r.mean2, r.frac1, r.frac2].map((v) => el("td", { class: "num" }, v == null ? "–" : fmtNum(v)))));
  return el("table", { class: "de-table" },
    el("thead", {}, el("tr", {}, ...head.map((h) => el("th", {}, h)))), el("tbody", {}, ...body));
}

export function deTooltip(p) {
  const rows = [["logfc", p.logfc], ["padj", p.padj], ["p", p.pvalue], ["mean 1", p.mean1], ["mean 2", p.mean2],
    ["frac 1", p.frac1], ["frac 2", p.frac2], ["cells", `${p.n_cells1} / ${p.n_cells2}`]];
  if (p.n_donors1 != null) rows.push(["donors", `${p.n_donors1} / ${p.n_donors2}`]);
  return el("div", {}, el("b", {}, p.symbol || p.gene),
    ...rows.map(([k, v]) => el("div", {}, `${k}: ${typeof v === "number" ? fmtNum(v) : v ?? "–"}`)),
    el("div", { class: "hint" }, "click: add to the gene list"));
}
