// The whole page state, and its round trip through the URL's query string:
//   /?genes=CD3E,MS4A1&by=cell_type,disease&where=disease:normal&plot=dot
//     &datasets=lung_a,lung_b&color=scaled&rows=cluster&cols=name
//   /?genes=CD3E,MS4A1&by=cell_type&plot=violin               (violins, up to six genes)
//   /?plot=de&compare=cell_type&group1=B%20cell&group2=rest&test=wilcoxon   (the Compare view)
//   /?plot=markers&compare=cell_type                     (the Markers view: each value's top genes)
//   /?genes=CD3E&by=cell_type&rollup=cell_type&expand=CL:0000084   (the ontology's tree:
//     rollup names the rolled-up columns, expand the term ids of the open rows; without
//     expand, the top rows are open)
// A pasted link therefore redraws the same plot; back/forward restore earlier states.

export const PLOTS = ["dot", "heatmap", "bars", "violin", "de", "markers"];
export const COLORS = ["mean", "scaled"];
export const GENE_ORDERS = ["typed", "name", "cluster"];
// The Compare view's test (docs/DE.md): auto picks donors or cells; wilcoxon only when asked.
export const TESTS = ["auto", "cells", "donors", "wilcoxon"];
// The Compare view's filters (docs/DE.md): which direction of change, and the least
// fraction of expressing cells (a side's, as the API's min_frac).
export const DIRECTIONS = ["both", "up", "down"];
// Row orders: "name", "cluster", or "expr:GENE" (descending mean of that gene).

export const DEFAULTS = Object.freeze({
  genes: [],
  by: ["cell_type"],
  where: [], // [column, value] pairs, in the order they were chosen
  datasets: [], // empty = every dataset
  plot: "dot",
  color: "mean",
  rows: "name",
  cols: "typed",
  compare: "", // the Compare view's column, its side 1 values and side 2 ("rest" or values)
  group1: [],
  group2: ["rest"],
  test: "auto",
  direction: "both",
  minFrac: 0,
  rollup: [], // ontology-backed columns whose terms stand for their subtrees (docs/ONTOLOGY.md)
  expand: null, // the tree's open rows (term ids); null = the top rows
});

const list = (s) => (s ? s.split(",").map((x) => x.trim()).filter(Boolean) : []);
const oneOf = (v, allowed, def) => (allowed.includes(v) ? v : def);
// A fraction from 0 to 1; anything else the default, 0.
const fraction = (v) => {
  const x = Number(v);
  return v != null && v !== "" && Number.isFinite(x) && x >= 0 && x <= 1 ? x : 0;
};

export function parseState(search) {
  const q = new URLSearchParams(search);
  const where = [];
  for (const w of q.getAll("where")) {
    const i = w.indexOf(":");
    if (i > 0) where.push([w.slice(0, i), w.slice(i + 1)]);
  }
  const rows = q.get("rows") || DEFAULTS.rows;
  return {
    genes: dedupe(list(q.get("genes"))),
    by: q.has("by") ? dedupe(list(q.get("by"))).slice(0, 2) : [...DEFAULTS.by],
    where,
    datasets: list(q.get("datasets")),
    plot: oneOf(q.get("plot"), PLOTS, DEFAULTS.plot),
    color: oneOf(q.get("color"), COLORS, DEFAULTS.color),
    rows: rows === "name" || rows === "cluster" || rows.startsWith("expr:") ? rows : DEFAULTS.rows,
    cols: oneOf(q.get("cols"), GENE_ORDERS, DEFAULTS.cols),
    compare: q.get("compare") || "",
    group1: q.getAll("group1"),
    group2: q.getAll("group2").length ? q.getAll("group2") : ["rest"],
    test: oneOf(q.get("test"), TESTS, DEFAULTS.test),
    direction: oneOf(q.get("direction"), DIRECTIONS, DEFAULTS.direction),
    minFrac: fraction(q.get("min_frac")),
    rollup: dedupe(list(q.get("rollup"))),
    expand: q.has("expand") ? list(q.get("expand")) : null,
  };
}

function dedupe(names) {
  const seen = new Set();
  return names.filter((n) => {
    const k = n.toLowerCase();
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

// Query-string encoding that keeps ':' and ',' readable (both are legal in a query).
export function enc(s) {
  return encodeURIComponent(s).replace(/%3A/gi, ":").replace(/%2C/gi, ",");
}

export function toQueryString(pairs) {
  return pairs.map(([k, v]) => `${k}=${enc(v)}`).join("&");
}

export function stateToSearch(s) {
  const pairs = [];
  if (s.genes.length) pairs.push(["genes", s.genes.join(",")]);
  pairs.push(["by", s.by.join(",")]);
  for (const [c, v] of s.where) pairs.push(["where", `${c}:${v}`]);
  if (s.datasets.length) pairs.push(["datasets", s.datasets.join(",")]);
  pairs.push(["plot", s.plot]);
  if (s.color !== DEFAULTS.color) pairs.push(["color", s.color]);
  if (s.rows !== DEFAULTS.rows) pairs.push(["rows", s.rows]);
  if (s.cols !== DEFAULTS.cols) pairs.push(["cols", s.cols]);
  if (s.plot === "de" || s.compare) {
    if (s.compare) pairs.push(["compare", s.compare]);
    for (const v of s.group1) pairs.push(["group1", v]);
    for (const v of s.group2) pairs.push(["group2", v]);
  }
  if (s.test !== DEFAULTS.test) pairs.push(["test", s.test]);
  if (s.direction !== DEFAULTS.direction) pairs.push(["direction", s.direction]);
  if (s.minFrac) pairs.push(["min_frac", String(s.minFrac)]);
  if (s.rollup.length) pairs.push(["rollup", s.rollup.join(",")]);
  if (s.rollup.length && s.expand) pairs.push(["expand", s.expand.join(",")]);
  return "?" + toQueryString(pairs);
}

// The selected values of one column (empty = no filter on it).
export function whereValues(s, column) {
  return s.where.filter(([c]) => c === column).map(([, v]) => v);
}

export function withWhere(s, column, values) {
  const others = s.where.filter(([c]) => c !== column);
  return { ...s, where: [...others, ...values.map((v) => [column, v])] };
}
