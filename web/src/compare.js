// The Compare view (docs/DE.md): differential expression between two sides of the selected
// cells, as a volcano plot (one <circle> per gene with a padj: x = logfc, y = -log10
// padj; padj = 0 is drawn on the top edge, beyond the scale) beside the ranked table.
// Clicking a gene (circle or row) adds it to the gene list.

import * as Plot from "@observablehq/plot";
import { el, fmtNum } from "./format.js";
import { FONT_FAMILY } from "./plots.js";

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

export function volcano(answer, room, label) {
  const { top, points } = volcanoPoints(answer);
  // Room for the ranked table (about 450 px) beside the volcano at 1280 px wide.
  const width = Math.max(360, Math.min(room.width - 470, 760));
  const height = Math.max(320, Math.min(room.height, 560));
  const xmax = Math.max(0.5, ...points.map((p) => Math.abs(p.logfc))) * 1.05;
  const chart = Plot.plot({
    width, height, marginLeft: 56, marginBottom: 44, marginTop: 20, marginRight: 16,
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
      Plot.text(points.filter((p) => p.side !== "flat").slice(0, 12), {
        x: "logfc", y: "y", text: (p) => p.symbol || p.gene, dy: -8, fontSize: 11, fill: "#1f2430",
      }),
    ],
  });
  chart.setAttribute("class", "volcano");
  const sx = chart.scale("x"), sy = chart.scale("y");
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
  const legend = el("div", { class: "de-legend", style: `max-width: ${width}px` },
    el("span", { style: `color:${UP}` }, "● higher on side 1"), " ",
    el("span", { style: `color:${DOWN}` }, "● higher on side 2"), " ",
    el("span", { style: `color:${FLAT}` }, `● padj > ${SIGNIFICANT}`), " · ",
    "◉ padj = 0: beyond the scale, drawn on the top edge");
  return { chart, legend, hitTest, points };
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
