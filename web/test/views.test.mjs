// Unit tests of the Compare, Markers and bar-chart logic that needs no browser: where
// the volcano's labels go, the Markers view's groups and dot-plot genes, the clustering
// dendrogram, the columns worth a filter, and what the bars' legend says about donors.
import assert from "node:assert/strict";
import { test } from "node:test";
import { labelCandidates, placeLabels } from "../src/compare.js";
import { clusterOrder, clusterTree, leafOrder } from "../src/cluster.js";
import { subtypeGroups, usefulColumns } from "../src/filters.js";
import { markerGenes, markerGroups } from "../src/markers.js";
import { buildModel } from "../src/model.js";
import { barErrorText } from "../src/plots.js";
import { DEFAULTS } from "../src/state.js";

const overlap = (a, b) => a.x0 < b.x1 && b.x0 < a.x1 && a.y0 < b.y1 && b.y0 < a.y1;

test("volcano labels: the best genes of each side alternate, and placed labels never overlap or leave the plot", () => {
  const points = [];
  // A crowded cloud: 40 significant genes per side within a few pixels of each other.
  for (let i = 0; i < 40; i++) {
    points.push({ gene: `U${i}`, side: "up", px: 300 + (i % 5) * 3, py: 100 + Math.floor(i / 5) * 4 });
    points.push({ gene: `D${i}`, side: "down", px: 200 - (i % 5) * 3, py: 100 + Math.floor(i / 5) * 4 });
  }
  const cands = labelCandidates(points, 8).map((p) => ({ ...p, text: p.gene }));
  assert.deepEqual(cands.slice(0, 4).map((c) => c.gene), ["U0", "D0", "U1", "D1"]);
  assert.equal(cands.length, 16);
  const bounds = { x0: 50, y0: 0, x1: 500, y1: 300 };
  const placed = placeLabels(cands, bounds, (t) => t.length * 7);
  assert.ok(placed.length >= 4, `placed ${placed.length}`);
  assert.deepEqual(placed.slice(0, 2).map((p) => p.candidate.gene), ["U0", "D0"], "the top gene of each side gets a label");
  for (const [i, p] of placed.entries()) {
    assert.ok(p.box.x0 >= bounds.x0 && p.box.x1 <= bounds.x1 && p.box.y0 >= bounds.y0 && p.box.y1 <= bounds.y1, p.candidate.gene);
    for (const q of placed.slice(i + 1)) assert.ok(!overlap(p.box, q.box), `${p.candidate.gene} / ${q.candidate.gene}`);
    for (const c of cands) {
      const dot = { x0: c.px - 4, y0: c.py - 4, x1: c.px + 4, y1: c.py + 4 };
      assert.ok(!overlap(p.box, dot), `${p.candidate.gene} covers ${c.gene}'s dot`);
    }
  }
  // With room, up genes go right of their dot, down genes left.
  const lone = placeLabels([{ gene: "U", text: "U", side: "up", px: 300, py: 100 }, { gene: "D", text: "D", side: "down", px: 100, py: 100 }],
    bounds, (t) => t.length * 7);
  assert.deepEqual(lone.map((p) => p.anchor), ["start", "end"]);
  assert.ok(lone.every((p) => !p.leader));
  // No room at all: nothing is placed rather than something overlapping.
  assert.deepEqual(placeLabels(cands, { x0: 0, y0: 0, x1: 5, y1: 5 }, (t) => t.length * 7), []);
});

test("markers: groups in the answer's order; the dot plot takes each group's top genes once", () => {
  const row = (cell_type, symbol, n) => ({ cell_type, gene: `E_${symbol}`, symbol, n_cells1: n });
  const answer = {
    columns: ["cell_type", "gene", "symbol", "n_cells1"],
    rows: [row("B", "MS4A1", 5), row("B", "CD79A", 5), row("B", "CD74", 5), row("B", "HLA-DRA", 5),
      row("NK", "NKG7", 3), row("NK", "cd74", 3), row("NK", "GNLY", 3), row("NK", "PRF1", 3), row("T", "CD3E", 9)],
  };
  const groups = markerGroups(answer);
  assert.deepEqual(groups.map((g) => [g.value, g.nCells, g.genes.length]), [["B", 5, 4], ["NK", 3, 4], ["T", 9, 1]]);
  // cd74 marks NK too but stays with B (the first), case-insensitively.
  assert.deepEqual(markerGenes(groups, 3), ["MS4A1", "CD79A", "CD74", "NKG7", "GNLY", "CD3E"]);
  assert.deepEqual(markerGenes(groups, 1), ["MS4A1", "NKG7", "CD3E"]);
});

test("clustering: the tree's leaf order is the clustered order; heights grow towards the root", () => {
  const vectors = [[0, 0], [10, 10], [0.5, 0], [10, 11], [5, 5]];
  const tree = clusterTree(vectors);
  assert.deepEqual(leafOrder(tree), clusterOrder(vectors));
  assert.deepEqual([...leafOrder(tree)].sort(), [0, 1, 2, 3, 4]);
  const check = (n) => {
    if (n.leaf != null) return 0;
    const h = Math.max(check(n.left), check(n.right));
    assert.ok(n.height >= h, "a merge is no lower than its children");
    return n.height;
  };
  check(tree);
  assert.equal(clusterTree([]), null);
  assert.deepEqual(clusterTree([[1]]), { leaf: 0 });
  // The closest pair merges first, at its distance.
  const pair = (n) => (n.leaf != null ? [] : [[leafOrder(n).sort().join(), n.height], ...pair(n.left), ...pair(n.right)]);
  assert.deepEqual(pair(tree).find(([k]) => k === "0,2"), ["0,2", 0.5]);
});

test("model: a clustered one-column split leaves its dendrogram over the row keys, in row order", () => {
  const answer = { columns: ["cell_type", "gene", "n_cells", "mean"], genes: [{ id: "G1" }, { id: "G2" }, { id: "G3" }], rows: [] };
  for (const [ct, m] of [["A", [1, 0, 0]], ["B", [0, 5, 0]], ["C", [1.1, 0, 0]], ["D", [0, 5.2, 0.1]]]) {
    m.forEach((mean, i) => answer.rows.push({ cell_type: ct, gene: `G${i + 1}`, n_cells: 10, mean }));
  }
  const model = buildModel(answer, { ...DEFAULTS, rows: "cluster", cols: "cluster" }, null);
  assert.deepEqual(leafOrder(model.rowTree), model.rowOrder.map((r) => r.key));
  assert.deepEqual(leafOrder(model.geneTree), model.geneOrder.map((g) => g.id));
  assert.equal(buildModel(answer, { ...DEFAULTS, rows: "name" }, null).rowTree, null);
});

test("filters: a column with one value, or only NA, is left out; a group holding every value is too", () => {
  const meta = {
    columns: [
      { name: "dataset", values: [{ value: "a", n_cells: 3 }] },
      { name: "assay", values: [{ value: "10x", n_cells: 9 }] },
      { name: "note", values: [{ value: "x", n_cells: 0 }, { value: "NA", n_cells: 9 }] },
      { name: "donor", values: [{ value: "d1", n_cells: 4 }, { value: "NA", n_cells: 5 }] },
      { name: "cell_type", ontology: "CL", values: [{ value: "CD4 T", term_id: "C4", n_cells: 2 }, { value: "CD8 T", term_id: "C8", n_cells: 2 }] },
    ],
    terms: [{ id: "T", label: "T cell", parents: ["L"] }, { id: "L", label: "lymphocyte", parents: [] },
      { id: "C4", label: "CD4 T", parents: ["T"] }, { id: "C8", label: "CD8 T", parents: ["T"] }],
  };
  assert.deepEqual(usefulColumns(meta).map((c) => c.name), ["dataset", "donor", "cell_type"]);
  // "T cell" and "lymphocyte" both hold every value: filtering by them selects everything.
  assert.deepEqual(subtypeGroups(meta, "cell_type"), []);
});

test("bars: the legend says which cells the dots and error bars cover when some have no donor", () => {
  const answer = {
    columns: ["cell_type", "gene", "n_cells", "mean", "std"], genes: [{ id: "G1" }],
    rows: [{ cell_type: "T", gene: "G1", n_cells: 30, mean: 2, std: 1 }, { cell_type: "B", gene: "G1", n_cells: 10, mean: 1, std: 1 }],
  };
  const donorRows = [
    { cell_type: "T", dataset: "a", donor: "d1", gene: "G1", n_cells: 8, mean: 2 },
    { cell_type: "T", dataset: "a", donor: "d2", gene: "G1", n_cells: 7, mean: 3 },
    { cell_type: "T", dataset: "b", donor: "NA", gene: "G1", n_cells: 15, mean: 1 },
    { cell_type: "B", dataset: "a", donor: "d1", gene: "G1", n_cells: 10, mean: 1 },
  ];
  const donor = { column: "donor", answer: { columns: ["cell_type", "dataset", "donor", "gene", "n_cells", "mean"], rows: donorRows } };
  const model = buildModel(answer, { ...DEFAULTS, plot: "bars" }, donor);
  assert.deepEqual(model.donorCoverage, { cells: 40, donorCells: 25, partial: true, without: ["b"] });
  assert.equal(model.data.find((d) => d.row.label === "T").donorCells, 15);
  const text = barErrorText(model);
  assert.match(text, /only the cells with a donor: 25 of the 40 cells the bars average \(b has no donors\)\./);
  // Every cell with a donor: the legend says nothing about coverage.
  const full = buildModel(answer, { ...DEFAULTS, plot: "bars" },
    { column: "donor", answer: { ...donor.answer, rows: donorRows.map((r) => (r.donor === "NA" ? { ...r, donor: "d3" } : r)) } });
  assert.equal(full.donorCoverage.partial, false);
  assert.doesNotMatch(barErrorText(full), /only the cells/);
  assert.match(barErrorText(buildModel(answer, DEFAULTS, null)), /across cells/);
});
