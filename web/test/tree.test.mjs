// The ontology's tree on the page (docs/ONTOLOGY.md, docs/WEB.md): the URL state of a
// roll-up, a compact rolled-up answer turned into rows, the rows a collapsed tree shows,
// and the "(and subtypes)" groups of the filters.
import assert from "node:assert/strict";
import { test } from "node:test";
import { expandRows, populationPairs, splitColumns } from "../src/api.js";
import { subtypeGroups } from "../src/filters.js";
import { buildModel, toggleExpand } from "../src/model.js";
import { DEFAULTS, parseState, stateToSearch } from "../src/state.js";

// A rolled-up answer in the compact layout, as /api/v1/query gives it: pre-order rows.
const TREE = [
  ["lymphocyte", "CL:0000542", 0],
  ["B cell", "CL:0000236", 1],
  ["T cell", "CL:0000084", 1],
  ["CD4 T cell", "CL:0000624", 2],
  ["CD8 T cell", "CL:0000625", 2],
  ["doublet", null, 0],
];
const answer = {
  columns: ["cell_type", "depth", "gene", "n_cells", "frac", "mean"],
  genes: [{ id: "G1", symbol: "CD3E", not_measured_in: [] }],
  splits: TREE.map(([l]) => [l]),
  split_terms: TREE.map(([, id]) => [id]),
  split_depth: TREE.map(([, , d]) => [d]),
  rows: TREE.map((_, i) => [i, 0, 100 - i, 0.5, 1.0]),
};

test("a roll-up and its open rows survive the URL round trip", () => {
  const s = { ...DEFAULTS, genes: ["CD3E"], rollup: ["cell_type"], expand: ["CL:0000084"] };
  const search = stateToSearch(s);
  assert.match(search, /rollup=cell_type&expand=CL:0000084$/);
  assert.deepEqual(parseState(search), s);
  assert.equal(parseState("?rollup=cell_type").expand, null);  // default: the top rows open
  assert.deepEqual(populationPairs({ ...s, where: [] }), [["rollup", "cell_type"]]);
});

test("depth columns and term ids come back into the rows", () => {
  assert.deepEqual(splitColumns(answer.columns), { labels: ["cell_type"], depths: ["depth"] });
  assert.deepEqual(splitColumns(["cell_type", "cell_type_depth", "tissue", "tissue_depth", "gene"]),
    { labels: ["cell_type", "tissue"], depths: ["cell_type_depth", "tissue_depth"] });
  const rows = expandRows(answer).rows;
  assert.equal(rows[3].cell_type, "CD4 T cell");
  assert.equal(rows[3].depth, 2);
  assert.equal(rows[3].cell_type_ontology_term_id, "CL:0000624");
  assert.equal(rows[5].cell_type_ontology_term_id, null);
  assert.equal(rows[3].mean, 1.0);
});

test("a tree shows the top rows open, then what the user opens and closes", () => {
  const state = { ...DEFAULTS, rollup: ["cell_type"] };
  let model = buildModel(expandRows(answer), state, null);
  assert.ok(model.tree);
  const labels = (m) => m.rowOrder.map((r) => r.label);
  // Default: lymphocyte open, so its children show; T cell's do not.
  assert.deepEqual(labels(model), ["lymphocyte", "B cell", "T cell", "doublet"]);
  assert.match(model.rowOrder[0].axisLabel, /^▾ lymphocyte$/);
  assert.match(model.rowOrder[2].axisLabel, /▸ T cell$/);
  assert.ok(model.rowOrder[2].axisLabel.startsWith("\u00a0\u00a0\u00a0"));  // indented by depth
  const tcell = model.rowOrder[2];
  const expand = toggleExpand(model, tcell);
  assert.deepEqual(expand.sort(), ["CL:0000084", "CL:0000542"]);
  model = buildModel(expandRows(answer), { ...state, expand }, null);
  assert.deepEqual(labels(model), ["lymphocyte", "B cell", "T cell", "CD4 T cell", "CD8 T cell", "doublet"]);
  // Closing the top row hides its whole subtree, whatever is open below.
  const closed = toggleExpand(model, model.rowOrder[0]);
  model = buildModel(expandRows(answer), { ...state, expand: closed }, null);
  assert.deepEqual(labels(model), ["lymphocyte", "doublet"]);
  // Without the roll-up in the state, the same answer is plain rows in label order.
  assert.equal(buildModel(expandRows(answer), DEFAULTS, null).tree, false);
});

test("filters offer the terms above two or more values, with their values", () => {
  const meta = {
    columns: [{ name: "cell_type", ontology: "CL", values: [
      { value: "CD4 T cell", term_id: "CL:0000624", n_cells: 5 },
      { value: "CD8 T cell", term_id: "CL:0000625", n_cells: 3 },
      { value: "B cell", term_id: "CL:0000236", n_cells: 2 },
      { value: "doublet", term_id: null, n_cells: 1 }] },
    { name: "sex", values: [{ value: "female", n_cells: 4 }] }],
    terms: [
      { id: "CL:0000542", label: "lymphocyte", parents: [] },
      { id: "CL:0000084", label: "T cell", parents: ["CL:0000542"] },
      { id: "CL:0000624", label: "CD4 T cell", parents: ["CL:0000084"] },
      { id: "CL:0000625", label: "CD8 T cell", parents: ["CL:0000084"] },
      { id: "CL:0000236", label: "B cell", parents: ["CL:0000542"] }],
  };
  const groups = subtypeGroups(meta, "cell_type").sort((a, b) => (a.label < b.label ? -1 : 1));
  assert.deepEqual(groups.map((g) => [g.label, g.values.sort()]), [
    ["T cell", ["CD4 T cell", "CD8 T cell"]],
    ["lymphocyte", ["B cell", "CD4 T cell", "CD8 T cell"]],
  ]);
  assert.deepEqual(subtypeGroups(meta, "sex"), []);
});

test("the Compare view's direction and minimum fraction survive the URL round trip", () => {
  const s = { ...DEFAULTS, plot: "de", compare: "cell_type", group1: ["NK cell"], direction: "up", minFrac: 0.1 };
  const search = stateToSearch(s);
  assert.match(search, /direction=up&min_frac=0\.1/);
  assert.deepEqual(parseState(search), s);
  assert.equal(parseState("?min_frac=2").minFrac, 0);  // outside [0, 1]: the default
  assert.equal(parseState("?direction=sideways").direction, "both");
  assert.doesNotMatch(stateToSearch(DEFAULTS), /direction|min_frac/);
});
