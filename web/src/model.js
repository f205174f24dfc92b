// Turns a /query answer into what the plots draw: the groups (rows), the genes
// (columns), one datum per (group, gene) with every metric, the colour value, the
// error bars of the bar chart, and the orders of rows and genes.

import { splitColumns } from "./api.js";
import { clusterTree, leafOrder } from "./cluster.js";
import { compareLabels } from "./format.js";

const SEP = "\u0001";

// The key of a group: its split values, joined.
export function splitKey(values) {
  return values.join(SEP);
}

export function buildModel(answer, state, donor) {
  const { labels: by, depths } = splitColumns(answer.columns);
  const selected = state.datasets.length ? new Set(state.datasets) : null;
  const genes = [];
  const geneById = new Map();
  for (const g of answer.genes) {
    if (geneById.has(g.id)) continue;
    const gene = {
      id: g.id,
      symbol: g.symbol || g.id,
      query: g.query,
      notMeasured: (g.not_measured_in || []).filter((d) => !selected || selected.has(d)),
      index: genes.length,
    };
    genes.push(gene);
    geneById.set(g.id, gene);
  }

  const rowMap = new Map();
  const data = [];
  for (const r of answer.rows) {
    const values = by.map((c) => String(r[c] ?? "NA"));
    const key = splitKey(values);
    let row = rowMap.get(key);
    if (!row) {
      row = { key, values, label: by.length ? values.join(" · ") : "all cells", block: values[0] ?? "", cells: new Map(),
        depth: depths.length ? Number(r[depths[0]] ?? 0) : 0, termId: by.length ? r[`${by[0]}_ontology_term_id`] ?? null : null };
      rowMap.set(key, row);
    }
    const gene = geneById.get(r.gene);
    if (!gene) continue;
    const d = { ...r, row, gene, v: r.mean };
    row.cells.set(gene.id, d);
    data.push(d);
  }
  const rows = [...rowMap.values()];

  // Scaled colour: min-max of the mean per gene over the plotted groups (scanpy's standard_scale="var").
  for (const gene of genes) {
    const ds = data.filter((d) => d.gene === gene);
    const means = ds.map((d) => d.mean ?? 0);
    const lo = Math.min(...means), hi = Math.max(...means);
    gene.maxMean = hi;
    for (const d of ds) {
      d.scaled = hi > lo ? ((d.mean ?? 0) - lo) / (hi - lo) : 0;
      d.v = state.color === "scaled" ? d.scaled : d.mean ?? 0;
    }
  }

  for (const d of data) {
    d.se = d.std != null && d.n_cells > 1 ? d.std / Math.sqrt(d.n_cells) : null;
    d.seKind = "cells";
  }
  // Per-donor error bars need donors: a selection whose cells all lack a donor value
  // (NA) keeps the error bars across cells, and the legend says why.
  const noDonors = Boolean(donor) && !hasDonorValues(donor);
  if (donor && !noDonors) attachDonors(data, rowMap, by, donor);

  const model = { by, genes, rows, data, twoLevel: by.length === 2, noDonors };
  if (donor && !noDonors) model.donorCoverage = donorCoverage(rows, donor);
  // The ontology's tree (docs/ONTOLOGY.md): one rolled-up split column, rows in the
  // answer's pre-order, collapsed parents hiding their subtrees.
  model.tree = by.length === 1 && depths.length === 1 && (state.rollup || []).includes(by[0]);
  model.rowOrder = model.tree ? treeRows(rows, state.expand) : orderRows(model, state.rows);
  model.geneOrder = orderGenes(model, state.cols);
  return model;
}

// Per-donor means of each (group, gene), from a query split additionally by dataset and
// the donor column: a donor is a (dataset, donor) pair, since labels repeat across
// studies, and cells without a donor (NA) belong to none (docs/DE.md). The error bar is the
// standard error of those means: sd(donor means) / sqrt(k).
function hasDonorValues({ answer, column }) {
  return answer.rows.some((r) => r.n_cells > 0 && r[column] != null && r[column] !== "NA");
}

function attachDonors(data, rowMap, by, { answer, column }) {
  const perCell = new Map();
  for (const r of answer.rows) {
    if (r.mean == null || !r.n_cells) continue;
    const label = r[column];
    if (label == null || label === "NA") continue;
    const key = by.map((c) => String(r[c] ?? "NA")).join(SEP) + SEP + r.gene;
    if (!perCell.has(key)) perCell.set(key, []);
    perCell.get(key).push({ donor: `${r.dataset} / ${label}`, mean: r.mean, n_cells: r.n_cells });
  }
  for (const d of data) {
    const donors = perCell.get(d.row.key + SEP + d.gene.id) || [];
    const k = donors.length;
    d.donors = donors;
    d.seKind = "donors";
    d.k = k;
    d.donorCells = donors.reduce((s, x) => s + x.n_cells, 0);
    if (k >= 2) {
      const m = donors.reduce((s, x) => s + x.mean, 0) / k;
      const sd = Math.sqrt(donors.reduce((s, x) => s + (x.mean - m) ** 2, 0) / (k - 1));
      d.se = sd / Math.sqrt(k);
    } else {
      d.se = null;
    }
  }
}

// How many of the plotted cells the dots and error bars describe (cells with a donor),
// of all the cells the bars average, and the datasets none of whose selected cells has
// a donor. A group's cells are its largest count over the genes (a gene a dataset did
// not measure counts fewer).
function donorCoverage(rows, { answer, column }) {
  let cells = 0, donorCells = 0;
  for (const row of rows) {
    let n = 0, k = 0;
    for (const d of row.cells.values()) {
      n = Math.max(n, d.n_cells ?? 0);
      k = Math.max(k, d.donorCells ?? 0);
    }
    cells += n;
    donorCells += k;
  }
  const withDonor = new Set(), seen = new Set();
  for (const r of answer.rows) {
    if (!r.n_cells || r.dataset == null) continue;
    seen.add(r.dataset);
    if (r[column] != null && r[column] !== "NA") withDonor.add(r.dataset);
  }
  const without = [...seen].filter((d) => !withDonor.has(d)).sort(compareLabels);
  return { cells, donorCells, partial: donorCells < cells, without };
}

function findGene(model, name) {
  const n = name.toLowerCase();
  return model.genes.find((g) => g.symbol.toLowerCase() === n || g.id.toLowerCase() === n || g.query.toLowerCase() === n);
}

// Pooled mean of a gene over some rows (sum of sums over sum of cells).
function pooledMean(rows, gene) {
  let s = 0, n = 0;
  for (const r of rows) {
    const d = r.cells.get(gene.id);
    if (d && d.sum != null) { s += d.sum; n += d.n_cells; }
  }
  return n ? s / n : -Infinity;
}

function vectorOf(rows, genes) {
  return genes.map((g) => {
    let s = 0;
    for (const r of rows) s += r.cells.get(g.id)?.v ?? 0;
    return s / rows.length;
  });
}

// Items in the order `how` asks; clustered, onTree gets the dendrogram (leaves: items).
function orderItems(items, how, model, labelOf, onTree) {
  const byName = (a, b) => compareLabels(labelOf(a), labelOf(b));
  if (how === "cluster" && items.length > 2) {
    const sorted = [...items].sort(byName);
    const tree = clusterTree(sorted.map((it) => vectorOf(it.rows, model.genes)));
    onTree?.(mapLeaves(tree, (i) => sorted[i]));
    return leafOrder(tree).map((i) => sorted[i]);
  }
  if (how.startsWith("expr:")) {
    const gene = findGene(model, how.slice(5));
    if (gene) {
      const score = new Map(items.map((it) => [it, pooledMean(it.rows, gene)]));
      return [...items].sort((a, b) => score.get(b) - score.get(a) || byName(a, b));
    }
  }
  return [...items].sort(byName);
}

// Rows, kept together per value of the first split column when splitting by two.
// Clustered rows of one split column leave their dendrogram in model.rowTree (leaves:
// row keys), for the heatmap to draw.
export function orderRows(model, how) {
  model.rowTree = null;
  if (!model.twoLevel) {
    const keep = (tree) => (model.rowTree = mapLeaves(tree, (it) => it.row.key));
    return orderItems(model.rows.map((r) => ({ row: r, rows: [r] })), how, model, (it) => it.row.label, keep).map((it) => it.row);
  }
  const blocks = new Map();
  for (const r of model.rows) {
    if (!blocks.has(r.block)) blocks.set(r.block, { name: r.block, rows: [] });
    blocks.get(r.block).rows.push(r);
  }
  const out = [];
  for (const b of orderItems([...blocks.values()], how, model, (it) => it.name)) {
    const inner = orderItems(b.rows.map((r) => ({ row: r, rows: [r] })), how, model, (it) => it.row.values[1]);
    out.push(...inner.map((it) => it.row));
  }
  return out;
}

// The same dendrogram with f(leaf) for each leaf.
function mapLeaves(node, f) {
  if (node.leaf != null) return { leaf: f(node.leaf) };
  return { left: mapLeaves(node.left, f), right: mapLeaves(node.right, f), height: node.height };
}

// Genes in the order `how` asks; clustered, their dendrogram is model.geneTree (leaves:
// gene ids).
export function orderGenes(model, how) {
  const genes = model.genes;
  model.geneTree = null;
  if (how === "name") return [...genes].sort((a, b) => compareLabels(a.symbol, b.symbol));
  if (how === "cluster" && genes.length > 2) {
    const vectors = genes.map((g) => model.rows.map((r) => r.cells.get(g.id)?.v ?? 0));
    const tree = clusterTree(vectors);
    model.geneTree = mapLeaves(tree, (i) => genes[i].id);
    return leafOrder(tree).map((i) => genes[i]);
  }
  return genes;
}

// The rows a tree shows, in pre-order: each row's parent is the nearest row before it
// of smaller depth; a row shows when every ancestor is open (`expand`: the open rows'
// term ids; null: the top rows). Each row gets its parent, whether it has children,
// whether it is open, and its axis label: indented, with ▾ (open) or ▸ (closed).
export function treeRows(rows, expand) {
  const stack = [];
  for (const r of rows) {
    while (stack.length && stack[stack.length - 1].depth >= r.depth) stack.pop();
    r.parent = stack.length ? stack[stack.length - 1] : null;
    r.hasChildren = false;
    if (r.parent) r.parent.hasChildren = true;
    stack.push(r);
  }
  const open = (r) => (expand ? Boolean(r.termId) && expand.includes(r.termId) : r.parent === null);
  const shown = [];
  for (const r of rows) {
    r.open = r.hasChildren && open(r);
    let visible = true;
    for (let p = r.parent; p && visible; p = p.parent) visible = p.hasChildren && open(p);
    r.axisLabel = "\u00a0\u00a0\u00a0".repeat(r.depth) + (r.hasChildren ? (r.open ? "▾ " : "▸ ") : "\u00a0\u00a0") + r.label;
    if (visible) shown.push(r);
  }
  return shown;
}

// The open rows after toggling `row` (term ids), from the rows the tree shows now.
export function toggleExpand(model, row) {
  const open = model.rows.filter((r) => r.open && r.termId).map((r) => r.termId);
  return row.open ? open.filter((id) => id !== row.termId) : [...open, row.termId];
}
