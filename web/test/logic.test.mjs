// Unit tests of the page's logic that needs no browser: URL state, error parsing,
// clustering and the plot model (orders, scaling, donor error bars).
import assert from "node:assert/strict";
import { test } from "node:test";
import { parseUnknownGene } from "../src/api.js";
import { clusterOrder } from "../src/cluster.js";
import { buildModel } from "../src/model.js";
import { DEFAULTS, parseState, stateToSearch } from "../src/state.js";

test("state survives the URL round trip", () => {
  const s = {
    ...DEFAULTS, genes: ["CD3E", "MS4A1"], by: ["cell_type", "disease"],
    where: [["disease", "normal"], ["cell_type", "CD4-positive, alpha-beta T cell"], ["stage", "a:b&c=d"]],
    datasets: ["lung_a", "lung_b"], plot: "bars", color: "scaled", rows: "expr:CD3E", cols: "cluster",
  };
  const search = stateToSearch(s);
  assert.match(search, /^\?genes=CD3E,MS4A1&by=cell_type,disease&where=disease:normal&/);
  assert.deepEqual(parseState(search), s);
  assert.deepEqual(parseState(""), { ...DEFAULTS, by: ["cell_type"] });
  assert.deepEqual(parseState("?by=").by, []);
  assert.equal(parseState("?plot=pie&rows=sideways").plot, "dot");
  assert.equal(parseState("?rows=sideways").rows, "name");
});

test("the server's unknown-gene message gives the gene and its near names", () => {
  assert.deepEqual(parseUnknownGene("unknown gene 'cd3x': no gene id or symbol matches (did you mean 'CD3E', 'CD3D' or 'CD4'?)"),
    { gene: "cd3x", suggestions: ["CD3E", "CD3D", "CD4"] });
  assert.deepEqual(parseUnknownGene("unknown gene 'ZZZ'"), { gene: "ZZZ", suggestions: [] });
  assert.equal(parseUnknownGene("unknown column 'x'"), null);
});

test("clustering keeps similar profiles together", () => {
  const order = clusterOrder([[0, 0], [10, 10], [0.1, 0], [10, 9.9], [5, 5.2]]);
  const pos = (i) => order.indexOf(i);
  assert.equal(order.length, 5);
  assert.equal(Math.abs(pos(0) - pos(2)), 1);
  assert.equal(Math.abs(pos(1) - pos(3)), 1);
  assert.deepEqual(clusterOrder([[1]]), [0]);
});

const answer = {
  columns: ["cell_type", "disease", "gene", "n_cells", "frac", "mean", "sum", "std"],
  rows: [
    { cell_type: "T", disease: "normal", gene: "G1", n_cells: 10, frac: 0.5, mean: 2, sum: 20, std: 1 },
    { cell_type: "T", disease: "tumor", gene: "G1", n_cells: 30, frac: 0.9, mean: 4, sum: 120, std: 1 },
    { cell_type: "B", disease: "normal", gene: "G1", n_cells: 20, frac: 0.1, mean: 1, sum: 20, std: 1 },
    { cell_type: "B", disease: "normal", gene: "G2", n_cells: 20, frac: 0.8, mean: 3, sum: 60, std: 1 },
  ],
  genes: [
    { query: "g1", id: "G1", symbol: "GENE1", not_measured_in: [] },
    { query: "g2", id: "G2", symbol: "GENE2", not_measured_in: ["lung_b", "other"] },
  ],
};

test("model: rows grouped by the first split column, ordered by a gene's pooled mean", () => {
  const s = { ...DEFAULTS, by: ["cell_type", "disease"], rows: "expr:GENE1", datasets: ["lung_a", "lung_b"] };
  const m = buildModel(answer, s, null);
  assert.deepEqual(m.rowOrder.map((r) => r.label), ["T · tumor", "T · normal", "B · normal"]);
  assert.deepEqual(m.genes[1].notMeasured, ["lung_b"]);
  const byName = buildModel(answer, { ...s, rows: "name" }, null);
  assert.deepEqual(byName.rowOrder.map((r) => r.label), ["B · normal", "T · normal", "T · tumor"]);
  const scaled = buildModel(answer, { ...s, color: "scaled" }, null);
  assert.deepEqual(scaled.data.filter((d) => d.gene.id === "G1").map((d) => d.v), [1 / 3, 1, 0]);
});

test("model: bar error bars are the standard error of the per-donor means", () => {
  const donor = {
    column: "donor",
    answer: {
      columns: ["cell_type", "disease", "donor", "gene", "n_cells", "mean"],
      rows: [
        { cell_type: "T", disease: "tumor", donor: "d1", gene: "G1", n_cells: 10, mean: 3 },
        { cell_type: "T", disease: "tumor", donor: "d2", gene: "G1", n_cells: 10, mean: 5 },
        { cell_type: "T", disease: "tumor", donor: "d3", gene: "G1", n_cells: 10, mean: 4 },
        { cell_type: "B", disease: "normal", donor: "d1", gene: "G1", n_cells: 20, mean: 1 },
      ],
    },
  };
  const m = buildModel(answer, { ...DEFAULTS, by: ["cell_type", "disease"] }, donor);
  const t = m.data.find((d) => d.row.label === "T · tumor");
  assert.equal(t.k, 3);
  assert.ok(Math.abs(t.se - 1 / Math.sqrt(3)) < 1e-12); // sd of 3,5,4 is 1
  assert.equal(m.data.find((d) => d.row.label === "B · normal" && d.gene.id === "G1").se, null); // one donor
  const cells = buildModel(answer, { ...DEFAULTS, by: ["cell_type", "disease"] }, null);
  assert.ok(Math.abs(cells.data[0].se - 1 / Math.sqrt(10)) < 1e-12);
});

test("model: a donor is a (dataset, donor) pair, and NA donors count for none", () => {
  // "d1" of study a and "d1" of study b are two donors; the NA row is no donor.
  const donor = {
    column: "donor",
    answer: {
      columns: ["cell_type", "disease", "dataset", "donor", "gene", "n_cells", "mean"],
      rows: [
        { cell_type: "T", disease: "tumor", dataset: "a", donor: "d1", gene: "G1", n_cells: 10, mean: 3 },
        { cell_type: "T", disease: "tumor", dataset: "b", donor: "d1", gene: "G1", n_cells: 10, mean: 5 },
        { cell_type: "T", disease: "tumor", dataset: "b", donor: "NA", gene: "G1", n_cells: 10, mean: 9 },
      ],
    },
  };
  const m = buildModel(answer, { ...DEFAULTS, by: ["cell_type", "disease"] }, donor);
  const t = m.data.find((d) => d.row.label === "T · tumor" && d.gene.id === "G1");
  assert.equal(t.k, 2);
  assert.deepEqual(t.donors.map((x) => x.donor), ["a / d1", "b / d1"]);
  assert.ok(Math.abs(t.se - Math.SQRT2 / Math.sqrt(2)) < 1e-12); // sd of 3,5 is sqrt(2)
});

test("model: a selection without donor values keeps the error bars across cells", () => {
  // pbmc68k-like: the store has a donor column, but every selected cell is NA there.
  const donor = {
    column: "donor",
    answer: {
      columns: ["cell_type", "disease", "dataset", "donor", "gene", "n_cells", "mean"],
      rows: [
        { cell_type: "T", disease: "tumor", dataset: "a", donor: "NA", gene: "G1", n_cells: 10, mean: 3 },
        { cell_type: "B", disease: "normal", dataset: "a", donor: "NA", gene: "G1", n_cells: 20, mean: 1 },
      ],
    },
  };
  const m = buildModel(answer, { ...DEFAULTS, by: ["cell_type", "disease"] }, donor);
  const cells = buildModel(answer, { ...DEFAULTS, by: ["cell_type", "disease"] }, null);
  assert.equal(m.noDonors, true);
  assert.equal(cells.noDonors, false);
  assert.ok(m.data.every((d) => d.seKind === "cells" && !d.donors));
  assert.deepEqual(m.data.map((d) => d.se), cells.data.map((d) => d.se));
  assert.ok(m.data.some((d) => d.se != null));
});

test("a compact query answer expands into the same rows as the objects layout", async () => {
  const { expandRows } = await import("../src/api.js");
  const compact = {
    columns: ["cell_type", "disease", "gene", "n_cells", "frac"],
    genes: [{ id: "G1" }, { id: "G2" }],
    splits: [["B cell", "normal"], ["T cell", "NA"]],
    rows: [[0, 1, 10, 0.5], [1, 0, 3, null]],
  };
  assert.deepEqual(expandRows(compact).rows, [
    { cell_type: "B cell", disease: "normal", gene: "G2", n_cells: 10, frac: 0.5 },
    { cell_type: "T cell", disease: "NA", gene: "G1", n_cells: 3, frac: null },
  ]);
  const objects = { columns: ["gene"], rows: [{ gene: "G1" }] };
  assert.equal(expandRows(objects), objects);
});

test("the Compare view's state round-trips through the URL", () => {
  const s = { ...DEFAULTS, plot: "de", compare: "disease", group1: ["COVID-19"], group2: ["normal"], where: [["cell_type", "B cell"]] };
  const search = stateToSearch(s);
  assert.ok(search.includes("plot=de") && search.includes("compare=disease") && search.includes("group2=normal"));
  assert.deepEqual(parseState(search), s);
  assert.deepEqual(parseState("?plot=de&compare=cell_type&group1=T").group2, ["rest"]);
});

test("volcano points: padj = 0 sits on the top edge, significance colours by direction", async () => {
  const { volcanoPoints } = await import("../src/compare.js");
  const answer = {
    rows: [
      { gene: "A", logfc: 2, padj: 0 },
      { gene: "B", logfc: -1, padj: 1e-4 },
      { gene: "C", logfc: 0.1, padj: 0.5 },
      { gene: "D", logfc: null, padj: null },
    ],
  };
  const { top, points } = volcanoPoints(answer);
  assert.equal(points.length, 3); // genes without a padj are not drawn
  assert.equal(top, 4 * 1.05);
  assert.deepEqual(points.map((p) => [p.gene, p.side, p.beyond]), [["A", "up", true], ["B", "down", false], ["C", "flat", false]]);
  assert.equal(points[0].y, top);
  assert.ok(Math.abs(points[1].y - 4) < 1e-12);
});

test("filters: values with cells come first, each part in label order", async () => {
  const { withCellsFirst } = await import("../src/filters.js");
  const values = [
    { value: "B cell", n: 0 }, { value: "T cell", n: 12 }, { value: "enterocyte", n: 0 },
    { value: "goblet cell", n: 3 }, { value: "NA", n: 0 },
  ];
  assert.deepEqual(withCellsFirst(values).map((v) => v.value), ["T cell", "goblet cell", "B cell", "enterocyte", "NA"]);
  assert.deepEqual(withCellsFirst([]), []);
});
