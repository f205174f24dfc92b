// The hover card: every metric of one (group, gene), and warnings when the gene was not
// measured in some of the selected datasets (their cells are not counted) or when the
// group holds scaled data (no mean in expressing cells).

import { el, fmtInt, fmtNum, fmtPct } from "./format.js";
import { FEW_CELLS } from "./plots.js";

export function tooltipContent(d, { plot, color, units }) {
  const head = el("div", { class: "tt-head" }, el("strong", {}, d.gene.symbol), el("span", { class: "tt-id" }, d.gene.id !== d.gene.symbol ? d.gene.id : ""));
  const group = el("div", { class: "tt-group" }, d.row.label);
  if (d.missing) {
    return [head, group, el("div", { class: "tt-warn" }, "No cells: the datasets holding this group did not measure this gene.")];
  }
  const rows = [
    ["cells", fmtInt(d.n_cells)],
    ["expressing", `${fmtInt(d.nnz)} (${fmtPct(d.frac)})`],
    ["mean", fmtNum(d.mean)],
    ["mean in expressing", meanExprText(d)],
    ["sum", fmtNum(d.sum)],
    ["variance", fmtNum(d.var)],
    ["sd", fmtNum(d.std)],
  ];
  if (color === "scaled" && plot !== "bars") rows.push(["scaled mean", fmtNum(d.scaled)]);
  if (plot === "bars") {
    rows.push(d.seKind === "donors"
      ? [`SE across ${d.k} donor${d.k === 1 ? "" : "s"}`, d.se == null ? "— (needs 2)" : fmtNum(d.se)]
      : ["SE across cells", fmtNum(d.se)]);
    // The dots and the error bar describe only the cells with a donor (docs/WEB.md).
    if (d.seKind === "donors" && d.donorCells < d.n_cells) rows.push(["cells with a donor", `${fmtInt(d.donorCells)} of ${fmtInt(d.n_cells)}`]);
  }
  const table = el("table", { class: "tt-table" }, rows.map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, v))));
  const out = [head, group, table, el("div", { class: "tt-units" }, `values: ${units}`)];
  if (d.n_cells < FEW_CELLS) {
    out.push(el("div", { class: "tt-warn tt-few" }, `Only ${fmtInt(d.n_cells)} cell${d.n_cells === 1 ? "" : "s"} in this group: its fraction and mean are noisy.`));
  }
  if (scaledData(d)) {
    out.push(el("div", { class: "tt-warn tt-scaled" }, "Some of these cells come from a dataset with values below 0 (scaled data): only values above 0 count as expressing, so the fraction means little and the mean in expressing cells is not given."));
  }
  if (d.gene.notMeasured.length) {
    out.push(el("div", { class: "tt-warn" }, `⚠ ${d.gene.symbol} was not measured in ${d.gene.notMeasured.join(", ")}; those cells are not counted.`));
  }
  return out;
}

// The server leaves mean_expr empty where a group holds cells of a dataset with values
// below 0 (docs/QUERY.md); with expressing cells, an empty mean_expr means that.
function scaledData(d) {
  return d.mean_expr == null && d.nnz > 0;
}

function meanExprText(d) {
  return scaledData(d) ? "— (scaled data)" : fmtNum(d.mean_expr);
}

export class Tooltip {
  constructor(node) {
    this.node = node;
  }
  show(content, clientX, clientY) {
    this.node.replaceChildren(...content);
    this.node.hidden = false;
    const { innerWidth: W, innerHeight: H } = window;
    const r = this.node.getBoundingClientRect();
    let x = clientX + 14, y = clientY + 14;
    if (x + r.width > W - 8) x = clientX - r.width - 14;
    if (y + r.height > H - 8) y = Math.max(8, H - 8 - r.height);
    this.node.style.transform = `translate(${Math.round(x)}px, ${Math.round(y)}px)`;
  }
  hide() {
    this.node.hidden = true;
  }
}

// The violin's hover card (docs/WEB.md, "The violin plot"): n, the zeros and their share,
// the median, the IQR (q25–q75), the whiskers and the median among expressing cells, all
// from the group's histogram.
export function violinTooltipContent(d, { units }) {
  const head = el("div", { class: "tt-head" }, el("strong", {}, d.gene.symbol), el("span", { class: "tt-id" }, d.gene.id !== d.gene.symbol ? d.gene.id : ""));
  const group = el("div", { class: "tt-group" }, d.row.label);
  if (d.missing) {
    return [head, group, el("div", { class: "tt-warn" }, "No cells: the datasets holding this group did not measure this gene.")];
  }
  const s = d.stats;
  const out = [head, group];
  if (s.scaled) {
    out.push(el("table", { class: "tt-table" }, el("tr", {}, el("th", {}, "cells"), el("td", {}, fmtInt(s.n)))),
      el("div", { class: "tt-warn tt-scaled" }, "Some of these cells come from a dataset with values below 0 (scaled data): they are in no histogram, so this group has no distribution."));
    return out;
  }
  const rows = [
    ["cells", fmtInt(s.n)],
    // 99.7% of zeros is not "100%": a few cells do express.
    ["zeros", `${fmtInt(s.zeros)} (${s.zeroShare > 0.99 && s.zeroShare < 1 ? `${(100 * s.zeroShare).toFixed(1)}%` : fmtPct(s.zeroShare)})`],
    ["median", fmtNum(s.median)],
    ["IQR (q25–q75)", `${fmtNum(s.q25)} – ${fmtNum(s.q75)}`],
    ["q05–q95", `${fmtNum(s.q05)} – ${fmtNum(s.q95)}`],
    ["median in expressing", s.medianExpr == null ? "— (no expressing cells)" : fmtNum(s.medianExpr)],
  ];
  out.push(el("table", { class: "tt-table" }, rows.map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, v)))),
    el("div", { class: "tt-units" }, `values: ${units}; quantiles from 64-bin histograms`));
  if (s.n < FEW_CELLS) {
    out.push(el("div", { class: "tt-warn tt-few" }, `Only ${fmtInt(s.n)} cell${s.n === 1 ? "" : "s"} in this group: its distribution is noisy.`));
  }
  if (d.gene.notMeasured.length) {
    out.push(el("div", { class: "tt-warn" }, `⚠ ${d.gene.symbol} was not measured in ${d.gene.notMeasured.join(", ")}; those cells are not counted.`));
  }
  return out;
}
