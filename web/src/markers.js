// The Markers view (docs/WEB.md): for each value of a column (a cell type), its top
// marker genes from /api/v1/markers, as one card per value. A gene's button adds it
// to the gene list; a card's "add all" adds its markers; "Dot plot of these markers"
// draws the classic marker dot plot from the top genes of every card.

import { el, fmtInt, fmtNum, fmtPct } from "./format.js";

// Genes a card shows, and how many of each card the marker dot plot takes.
export const MARKERS_SHOWN = 5;
export const MARKERS_PLOTTED = 3;
// The dot plot's gene list stays readable.
const MAX_PLOTTED = 60;

// The answer's rows grouped by value, in the answer's order: [{value, termId, nCells,
// genes: [row...]}]. `column` is the answer's first column.
export function markerGroups(answer) {
  const column = answer.columns[0];
  const groups = new Map();
  for (const r of answer.rows) {
    const value = String(r[column] ?? "NA");
    if (!groups.has(value)) groups.set(value, { value, termId: r[`${column}_ontology_term_id`] ?? null, nCells: r.n_cells1, genes: [] });
    groups.get(value).genes.push(r);
  }
  return [...groups.values()];
}

// The genes of the marker dot plot: the first `each` of every group, in group order,
// each gene once (a gene marking two groups stays with the first), at most MAX_PLOTTED.
export function markerGenes(groups, each = MARKERS_PLOTTED) {
  const seen = new Set(), out = [];
  for (const g of groups) {
    for (const r of g.genes.slice(0, each)) {
      const name = r.symbol || r.gene;
      if (seen.has(name.toLowerCase())) continue;
      seen.add(name.toLowerCase());
      out.push(name);
    }
  }
  return out.slice(0, MAX_PLOTTED);
}

// The cards. onGenes(names) adds genes to the list; onPlot(names) draws their dot plot.
export function markerCards(answer, column, { onGenes, onPlot }) {
  const groups = markerGroups(answer);
  const cards = groups.map((g) => {
    const shown = g.genes.slice(0, MARKERS_SHOWN);
    const names = shown.map((r) => r.symbol || r.gene);
    return el("section", { class: "mk-card", "data-value": g.value },
      el("header", { class: "mk-head" },
        el("span", { class: "mk-name", title: g.termId ? `${g.value} (${g.termId})` : g.value }, g.value),
        el("span", { class: "mk-cells" }, `${fmtInt(g.nCells)} cells`),
        el("button", { type: "button", class: "link mk-all", title: `Add these ${names.length} genes to the gene list`, onclick: () => onGenes(names) }, "add all")),
      el("ol", { class: "mk-list" }, ...shown.map((r) => el("li", {},
        el("button", { type: "button", class: "mk-gene", "data-gene": r.symbol || r.gene, title: markerTitle(r, g.value), onclick: () => onGenes([r.symbol || r.gene]) }, r.symbol || r.gene),
        el("span", { class: "mk-stat" }, `${fmtPct(r.frac1)} vs ${fmtPct(r.frac2)}`),
        el("span", { class: "mk-stat mk-lfc" }, `logfc ${fmtNum(r.logfc)}`)))));
  });
  const plotted = markerGenes(groups);
  const actions = el("div", { class: "mk-actions" },
    el("button", { type: "button", class: "primary", id: "mk-plot", disabled: !plotted.length, onclick: () => onPlot(plotted) },
      `Dot plot of these markers (top ${MARKERS_PLOTTED} of each)`),
    el("span", { class: "mk-hint" }, `Each card: a ${column.replace(/_/g, " ")} against all the other selected cells; its genes with logfc > 0 and padj ≤ 0.05, by logfc. Click a gene to add it.`));
  return { node: el("div", { class: "mk-view" }, actions, el("div", { class: "mk-grid" }, ...cards)), groups, plotted };
}

function markerTitle(r, value) {
  return `${r.symbol || r.gene}: logfc ${fmtNum(r.logfc)}, padj ${fmtNum(r.padj)}; expressed in ${fmtPct(r.frac1)} of ${value} ` +
    `and ${fmtPct(r.frac2)} of the rest; mean ${fmtNum(r.mean1)} vs ${fmtNum(r.mean2)}. Click: add to the gene list`;
}
