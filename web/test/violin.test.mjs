// Unit tests of the violin plot's arithmetic (web/src/distribution.js): quantiles from a
// histogram as docs/QUERY.md defines them, each row's summary, the violins' widths on
// one scale per gene; and the URL state of the violin plot and of the Compare view's test.
import assert from "node:assert/strict";
import { test } from "node:test";
import { drawable, histQuantile, rowStats, violinShapes } from "../src/distribution.js";
import { DEFAULTS, parseState, stateToSearch } from "../src/state.js";
import { sharePct } from "../src/violin.js";

const bins64 = (counts) => Array.from({ length: 64 }, (_, i) => counts[i] ?? 0);
// Unit-width bins make the hand computation readable: bin i covers (i, i + 1].
const unit = Array.from({ length: 65 }, (_, i) => i);
const close = (a, b, eps = 1e-12) => assert.ok(Math.abs(a - b) <= eps, `${a} != ${b}`);

test("histogram quantiles: hand-computed values", () => {
  // 10 cells: 4 zeros, 2 in (0, 1], 4 in (2, 3].  C(-1) = 4, C(0) = 6, C(1) = 6, C(2) = 10.
  const bins = bins64({ 0: 2, 2: 4 });
  const q = (p) => histQuantile(p, 10, 4, bins, unit);
  assert.equal(q(0.05), 0); // r = 0.5 <= Z
  assert.equal(q(0.25), 0); // r = 2.5 <= Z
  assert.equal(q(0.4), 0); // r = 4 = Z: still 0
  close(q(0.5), 0.5); // r = 5: bin 0, 0 + 1 * (5 - 4) / 2
  close(q(0.6), 1); // r = 6 = C(0): the upper edge of bin 0, not the empty bin 1
  close(q(0.75), 2.375); // r = 7.5: bin 2, 2 + (7.5 - 6) / 4
  close(q(1), 3); // r = 10: the top of the highest non-empty bin
  // Among expressing cells: Z = 0, N = 6; r = 3 -> bin 2, 2 + (3 - 2) / 4.
  close(histQuantile(0.5, 6, 0, bins, unit), 2.25);
});

test("histogram quantiles on the store's layout (w = ln(10001) / 64)", () => {
  const H = Math.log(10001), w = H / 64;
  const edges = Array.from({ length: 65 }, (_, i) => (i === 64 ? H : i * w));
  // 4 expressing cells in bin 10, no zeros: the median is halfway through the bin.
  close(histQuantile(0.5, 4, 0, bins64({ 10: 4 }), edges), 10 * w + w / 2);
  // 1 zero and 3 cells in bin 63: q = 0.25 is 0 (r = Z), q = 0.5 is a third into bin 63.
  assert.equal(histQuantile(0.25, 4, 1, bins64({ 63: 3 }), edges), 0);
  close(histQuantile(0.5, 4, 1, bins64({ 63: 3 }), edges), 63 * w + w / 3);
  assert.equal(histQuantile(0.5, 4, null, null, edges), null); // scaled data: no histogram
});

test("a row's summary: box, whiskers, median among expressing; all-zero and scaled rows", () => {
  const s = rowStats({ n_cells: 10, zeros: 4, bins: bins64({ 0: 2, 2: 4 }) }, unit);
  assert.equal(s.nnz, 6);
  assert.equal(s.zeroShare, 0.4);
  assert.equal(s.q05, 0);
  assert.equal(s.q25, 0);
  close(s.median, 0.5);
  close(s.q75, 2.375);
  close(s.q95, 2 + (9.5 - 6) / 4);
  close(s.medianExpr, 2.25);

  const zero = rowStats({ n_cells: 7, zeros: 7, bins: bins64({}) }, unit);
  assert.deepEqual([zero.q05, zero.q25, zero.median, zero.q75, zero.q95], [0, 0, 0, 0, 0]);
  assert.equal(zero.zeroShare, 1);
  assert.equal(zero.medianExpr, null);
  assert.equal(drawable({ n_cells: 7, zeros: 7, bins: bins64({}) }), false);

  const scaled = rowStats({ n_cells: 12, zeros: null, bins: null }, unit);
  assert.equal(scaled.scaled, true);
  assert.equal(drawable({ n_cells: 12, zeros: null, bins: null }), false); // null < 12 would be true
});

test("violin widths: one scale per gene, a bin's share of the group's cells", () => {
  const rows = [
    { gene: "A", n_cells: 10, zeros: 5, bins: bins64({ 0: 5 }) }, // share 0.5: A's widest
    { gene: "A", n_cells: 100, zeros: 80, bins: bins64({ 3: 10, 4: 10 }) }, // share 0.1
    { gene: "A", n_cells: 9, zeros: 9, bins: bins64({}) }, // all zeros: no violin
    { gene: "B", n_cells: 10, zeros: 9, bins: bins64({ 1: 1 }) }, // share 0.1, but B's widest
    { gene: "B", n_cells: 40, zeros: 39, bins: bins64({ 5: 1 }) }, // share 0.025
  ];
  const { shapes, top } = violinShapes(rows, unit);
  assert.equal(shapes.size, 4);
  assert.equal(shapes.has(rows[2]), false);
  close(shapes.get(rows[0]).peak, 1);
  close(shapes.get(rows[1]).peak, 0.2);
  close(shapes.get(rows[3]).peak, 1); // gene B is scaled on its own
  close(shapes.get(rows[4]).peak, 0.25);
  // The outline starts at the lower edge of the first non-empty bin and ends at the upper
  // edge of the last, through each bin's middle.
  assert.deepEqual(shapes.get(rows[1]).points.map((p) => p.x), [3, 3.5, 4.5, 5]);
  assert.deepEqual(shapes.get(rows[1]).points.map((p) => p.h), [0, 0.2, 0.2, 0]);
  assert.equal(top, 6);
});

test("the violin plot and the Compare view's test survive the URL round trip", () => {
  const v = { ...DEFAULTS, genes: ["CD3E", "MS4A1"], by: ["cell_type"], plot: "violin", rows: "expr:CD3E" };
  const search = stateToSearch(v);
  assert.match(search, /plot=violin/);
  assert.doesNotMatch(search, /test=/); // the default test stays out of the URL
  assert.deepEqual(parseState(search), v);

  const de = { ...DEFAULTS, plot: "de", compare: "cell_type", group1: ["B cell"], group2: ["rest"], test: "wilcoxon" };
  const s2 = stateToSearch(de);
  assert.match(s2, /test=wilcoxon/);
  assert.deepEqual(parseState(s2), de);
  for (const t of ["auto", "cells", "donors", "wilcoxon"]) assert.equal(parseState(`?plot=de&test=${t}`).test, t);
  assert.equal(parseState("?plot=de&test=anova").test, "auto");
  assert.equal(parseState("?plot=violin").plot, "violin");
});

test("zero shares are labelled without rounding a few cells away", () => {
  assert.equal(sharePct(0.38), "38%");
  assert.equal(sharePct(0.004), "0.4%");
  assert.equal(sharePct(0.0004), "<0.1%");
  assert.equal(sharePct(0.997), "99%");
  assert.equal(sharePct(1), "100%");
});
