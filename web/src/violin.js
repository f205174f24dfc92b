// The violin plot (docs/WEB.md, "The violin plot"): one facet per gene (at most six),
// one row per group of the split, drawn from an /api/v1/distribution answer. Per
// (group, gene) with expressing cells: a <path class="violin"> (the binned density of
// the expressing cells, mirrored around the row's axis; widths on one scale per gene),
// a box q25–q75 with a median line and whiskers q05–q95 (quantiles over all cells,
// zeros included), and at 0 a dot for the zeros labelled with their share. An all-zero
// group gets only that dot. Drawn as plain SVG so the figure exports as one file.

import { area, curveMonotoneX, scaleLinear } from "d3";
import { rowStats, violinShapes } from "./distribution.js";
import { fmtNum } from "./format.js";
import {
  blockBands, blockRules, FONT_FAMILY, geneLabel, INK, makeLegend, MUTED, notes, svg, textWidth, title, truncate,
} from "./plots.js";
import { splitColumns } from "./api.js";
import { splitKey } from "./model.js";

const FILL = "#8b98dc";
const OUTLINE = "#3a2e86";
const BOX = "#1f2430";
const ZERO = "#5b6473";
const GRID = "#e6e8ee";

// model: the page's model of the same query (rows, their order, genes); answer: the
// distribution answer; genes: the gene objects to draw, in order.
export function violinPlot(model, answer, genes, units, room) {
  const edges = answer.edges;
  const { labels: by } = splitColumns(answer.columns);
  const drawn = new Set(genes.map((g) => g.id));
  const rows = answer.rows.filter((r) => drawn.has(r.gene));
  const { shapes, top } = violinShapes(rows, edges);

  // Groups in the page's order; a group the query did not return (it should not happen)
  // goes last rather than unseen.
  const groups = [...model.rowOrder];
  const known = new Set(groups.map((g) => g.key));
  const cells = new Map(); // group key -> gene id -> datum
  for (const r of rows) {
    const values = by.map((c) => String(r[c] ?? "NA"));
    const key = splitKey(values);
    if (!known.has(key)) {
      if (model.tree) continue;  // a row of a collapsed subtree
      known.add(key);
      groups.push({ key, values, label: by.length ? values.join(" · ") : "all cells", block: values[0] ?? "" });
    }
    if (!cells.has(key)) cells.set(key, new Map());
    cells.get(key).set(r.gene, { answerRow: r, stats: rowStats(r, edges), shape: shapes.get(r) });
  }

  // Sizes: labels on the left, one facet per gene, rows tall enough for a violin.
  const rowLabels = new Map(groups.map((g) => [g.key, truncate(g.axisLabel ?? g.label, 260)]));
  const marginLeft = Math.ceil(Math.max(40, ...[...rowLabels.values()].map((l) => textWidth(l)))) + 14;
  const marginTop = 30, marginBottom = 46, marginRight = 12, gap = 18;
  const avail = room.width - 214 - marginLeft - marginRight;
  const facetW = Math.max(120, Math.min(360, Math.floor((avail - gap * (genes.length - 1)) / Math.max(1, genes.length))));
  const rowH = Math.max(24, Math.min(48, Math.floor((room.height - marginTop - marginBottom - 20) / Math.max(1, groups.length))));
  const width = marginLeft + genes.length * facetW + (genes.length - 1) * gap + marginRight;
  const height = marginTop + groups.length * rowH + marginBottom;
  const longLabel = facetW >= 220; // "38% zeros" when there is room, else "38%"
  const zeroZone = longLabel ? 70 : 40;
  const zeroR = Math.min(5.5, rowH * 0.2);
  const half = rowH * 0.44;
  const boxH = Math.max(4, Math.min(8, rowH * 0.2));
  const xmax = top > 0 ? top * 1.02 : edges[edges.length - 1];
  const facets = genes.map((gene, j) => {
    const left = marginLeft + j * (facetW + gap);
    const x0 = left + zeroZone;
    return { gene, left, right: left + facetW, x0, x: scaleLinear().domain([0, xmax]).range([x0, left + facetW - 8]) };
  });
  const yOf = (i) => marginTop + i * rowH + rowH / 2;

  const chart = svg("svg", {
    class: "chart chart-violin", width, height, viewBox: `0 0 ${width} ${height}`,
    "font-family": FONT_FAMILY, "font-size": 12, fill: INK, style: "background: white; overflow: visible",
  });
  const layer = (label) => chart.appendChild(svg("g", { "aria-label": label }));

  // Bands and rules per block of the first split column (two split columns).
  const index = new Map(groups.map((g, i) => [g.key, i]));
  const bands = layer("bands");
  for (const g of blockBands({ ...model, rowOrder: groups })) {
    bands.append(svg("rect", { x: marginLeft, y: yOf(index.get(g.key)) - rowH / 2, width: width - marginLeft - marginRight, height: rowH, fill: "#f3f5fa" }));
  }

  // Per facet: grid lines, the axis at 0, tick labels, the gene's name.
  const grid = layer("grid"), axes = layer("x-axis"), heads = layer("gene labels");
  const plotTop = marginTop, plotBottom = marginTop + groups.length * rowH;
  for (const f of facets) {
    for (const t of f.x.ticks(facetW >= 220 ? 5 : 3)) {
      const px = f.x(t);
      grid.append(svg("line", { x1: px, x2: px, y1: plotTop, y2: plotBottom, stroke: t === 0 ? "#b8bfce" : GRID }));
      axes.append(svg("line", { x1: px, x2: px, y1: plotBottom, y2: plotBottom + 4, stroke: MUTED }));
      axes.append(svg("text", { x: px, y: plotBottom + 16, "text-anchor": "middle", fill: MUTED, "font-size": 11 }, fmtNum(t)));
    }
    axes.append(svg("line", { x1: f.left, x2: f.right, y1: plotBottom, y2: plotBottom, stroke: "#b8bfce" }));
    axes.append(svg("text", { x: f.x0, y: plotBottom + 16, "text-anchor": "end", dx: -zeroR - 4, fill: MUTED, "font-size": 11 }, "zeros"));
    const name = truncate(geneLabel(f.gene), facetW - 8);
    heads.append(svg("text", { x: (f.left + f.right) / 2, y: marginTop - 10, "text-anchor": "middle", "font-weight": 600, class: "gene-label" }, name));
  }
  const axisLabel = svg("text", { x: (marginLeft + width - marginRight) / 2, y: height - 8, "text-anchor": "middle", fill: MUTED, "font-size": 11 }, `expression, ${units} →`);
  axes.append(axisLabel);

  // Row labels: the same aria-label as Observable Plot's axes, so the page's row-label
  // behaviours (markers of a group) find them.
  const ticks = layer("y-axis tick label");
  groups.forEach((g, i) => {
    const t = svg("text", { x: marginLeft - 8, y: yOf(i), dy: "0.32em", "text-anchor": "end" }, rowLabels.get(g.key));
    if (rowLabels.get(g.key) !== g.label) t.append(svg("title", {}, g.label));
    ticks.append(t);
  });
  const rules = layer("block rules");
  for (const g of blockRules({ ...model, rowOrder: groups })) {
    const y = yOf(index.get(g.key)) - rowH / 2;
    rules.append(svg("line", { x1: 0, x2: width - marginRight, y1: y, y2: y, stroke: "#b8bfce" }));
  }

  // The marks.
  const violins = layer("violins"), boxes = layer("boxes"), zeros = layer("zeros");
  groups.forEach((g, i) => {
    const y = yOf(i);
    for (const f of facets) {
      const d = cells.get(g.key)?.get(f.gene.id);
      if (!d) continue;
      const s = d.stats;
      if (s.scaled) {
        zeros.append(svg("text", { x: f.x0 + 4, y, dy: "0.32em", fill: MUTED, "font-size": 11, "font-style": "italic", class: "no-hist" }, "scaled data: no histogram"));
        continue;
      }
      if (d.shape) {
        const outline = area().curve(curveMonotoneX).x((p) => f.x(p.x)).y0((p) => y + p.h * half).y1((p) => y - p.h * half);
        violins.append(svg("path", {
          class: "violin", d: outline(d.shape.points), fill: FILL, "fill-opacity": 0.78, stroke: OUTLINE, "stroke-opacity": 0.55, "stroke-width": 0.8,
          "data-group": g.label, "data-gene": f.gene.id,
        }));
        const bx = svg("g", { class: "box" });
        bx.append(svg("line", { x1: f.x(s.q05), x2: f.x(s.q95), y1: y, y2: y, stroke: BOX, "stroke-width": 1.1 }));
        bx.append(svg("rect", { x: f.x(s.q25), y: y - boxH / 2, width: Math.max(1.5, f.x(s.q75) - f.x(s.q25)), height: boxH, fill: BOX, "fill-opacity": 0.82 }));
        bx.append(svg("line", { class: "median", x1: f.x(s.median), x2: f.x(s.median), y1: y - boxH / 2 - 1.5, y2: y + boxH / 2 + 1.5, stroke: "white", "stroke-width": 2 }));
        boxes.append(bx);
      }
      // The zeros: a dot at 0 (area ∝ their share), labelled with the share.
      if (s.zeros > 0) {
        const r = 1.4 + (zeroR - 1.4) * Math.sqrt(s.zeroShare);
        const pct = sharePct(s.zeroShare);
        zeros.append(svg("circle", {
          class: "zeros", cx: f.x0, cy: y, r, fill: ZERO, stroke: "white", "stroke-width": 0.8,
          "data-share": s.zeroShare, "data-group": g.label, "data-gene": f.gene.id,
        }));
        zeros.append(svg("text", { class: "zeros-label", x: f.x0 - zeroR - 3, y, dy: "0.32em", "text-anchor": "end", fill: MUTED, "font-size": 10.5 },
          longLabel ? `${pct} zeros` : pct));
      }
    }
  });

  const legend = makeLegend([violinLegend, boxLegend, zeroLegend(zeroR)]);
  const hitTest = (px, py) => {
    const i = Math.floor((py - marginTop) / rowH);
    if (i < 0 || i >= groups.length) return null;
    const f = facets.find((x) => px >= x.left - gap / 2 && px < x.right + gap / 2);
    if (!f) return null;
    const g = groups[i];
    const d = cells.get(g.key)?.get(f.gene.id);
    return d ? { ...d, row: g, gene: f.gene } : { row: g, gene: f.gene, missing: true };
  };
  return { chart, legend, hitTest, groups, facets };
}

// "38%", with a decimal below 10% so that 0.4% is not "0%"; never "100%" unless all are.
export function sharePct(x) {
  if (x >= 1) return "100%";
  if (x <= 0) return "0%";
  const p = 100 * x;
  if (p < 10) return `${p < 0.1 ? "<0.1" : p.toFixed(1)}%`;
  return `${Math.min(99, Math.round(p))}%`;
}

// ---------------------------------------------------------------- legend

function violinLegend(g) {
  let y = title(g, "Violin", "expressing cells' density");
  const outline = area().curve(curveMonotoneX).x((p) => p[0]).y0((p) => y + 12 + p[1]).y1((p) => y + 12 - p[1]);
  g.append(svg("path", { d: outline([[0, 0], [12, 3], [30, 9], [48, 10], [70, 5], [96, 1.5], [120, 0]]), fill: FILL, "fill-opacity": 0.78, stroke: OUTLINE, "stroke-opacity": 0.55 }));
  return notes(g, y + 32, "width: share of the group's cells in each bin, one scale per gene") - 10;
}

function boxLegend(g) {
  let y = title(g, "Box", "all cells, zeros included");
  g.append(svg("line", { x1: 6, x2: 110, y1: y + 8, y2: y + 8, stroke: BOX, "stroke-width": 1.1 }));
  g.append(svg("rect", { x: 34, y: y + 4, width: 44, height: 8, fill: BOX, "fill-opacity": 0.82 }));
  g.append(svg("line", { x1: 54, x2: 54, y1: y + 2.5, y2: y + 13.5, stroke: "white", "stroke-width": 2 }));
  return notes(g, y + 32, "box: q25–q75, white line: median; whiskers: q05–q95") - 10;
}

function zeroLegend(zeroR) {
  return (g) => {
    let y = title(g, "Zeros", "cells without a value above 0");
    [0.1, 0.5, 1].forEach((f, i) => {
      const cx = 30 + i * 56;
      g.append(svg("circle", { cx, cy: y + 8, r: 1.4 + (zeroR - 1.4) * Math.sqrt(f), fill: ZERO }));
      g.append(svg("text", { x: cx - zeroR - 3, y: y + 8, dy: "0.32em", "text-anchor": "end", fill: MUTED, "font-size": 10.5 }, sharePct(f)));
    });
    return notes(g, y + 32, "at 0; label: their share") + 5 - 15;
  };
}
