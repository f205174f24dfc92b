// What the violin plot computes from an /api/v1/distribution answer, without a browser:
// quantiles from a row's histogram (the definition of docs/QUERY.md, "Distribution
// metrics"), each row's summary, and the violins' outlines with widths on one scale per
// gene. The drawing itself is in violin.js.

export const MAX_VIOLIN_GENES = 6;

// The quantile q of a histogram: n cells, `zeros` of them at 0, the others in `bins`
// (bin i covers (edges[i], edges[i + 1]]). With r = q·n, C(−1) = zeros and
// C(i) = C(i−1) + bins[i]: 0 when r ≤ zeros; else, with i the first bin where C(i) ≥ r,
// edges[i] + w·(r − C(i−1)) / bins[i], w = edges[1] − edges[0] (docs/QUERY.md). It is the
// smallest x where the CDF reaches q, the zeros a point mass at 0 and each bin's cells
// spread evenly over it. null when there is nothing to answer from.
export function histQuantile(q, n, zeros, bins, edges) {
  if (bins == null || zeros == null || !(n > 0)) return null;
  const r = q * n;
  if (r <= zeros) return 0;
  const w = edges[1] - edges[0];
  let before = zeros;
  for (let i = 0; i < bins.length; i++) {
    const c = bins[i];
    const after = before + c;
    if (c > 0 && after >= r) return edges[i] + (w * (r - before)) / c;
    before = after;
  }
  return edges[bins.length]; // only when the counts do not add up to n (q > 1)
}

// The summary of one answer row: n, zeros and their share, the box (q25–q75, median),
// the whiskers (q05–q95) and the median among the expressing cells (the same quantile
// with zeros = 0 and n = n_cells − zeros). `scaled` marks a row whose cells include a
// dataset with values below 0: the server gives it no histogram.
export function rowStats(row, edges) {
  const n = row.n_cells;
  if (row.bins == null || row.zeros == null) {
    return { n, zeros: null, nnz: null, zeroShare: null, scaled: true };
  }
  const zeros = row.zeros, nnz = n - zeros;
  const at = (q) => histQuantile(q, n, zeros, row.bins, edges);
  return {
    n, zeros, nnz, zeroShare: n > 0 ? zeros / n : 0, scaled: false,
    q05: at(0.05), q25: at(0.25), median: at(0.5), q75: at(0.75), q95: at(0.95),
    medianExpr: nnz > 0 ? histQuantile(0.5, nnz, 0, row.bins, edges) : null,
  };
}

// The violins of an answer: for each row with expressing cells, its outline as points
// {x: value, h: half-width in [0, 1]}. A bin's width is its share of the group's cells
// (zeros included, so a group with few expressing cells is thin), divided by the largest
// such share among the violins of the same gene: each gene's fullest bin is full width.
// Returns Map(row -> {points, peak}) and the largest upper edge of a non-empty bin.
export function violinShapes(rows, edges) {
  const peakOf = new Map(); // gene -> largest bin share
  for (const r of rows) {
    if (!drawable(r)) continue;
    let m = 0;
    for (const c of r.bins) m = Math.max(m, c / r.n_cells);
    peakOf.set(r.gene, Math.max(peakOf.get(r.gene) ?? 0, m));
  }
  const shapes = new Map();
  let top = 0;
  for (const r of rows) {
    if (!drawable(r)) continue;
    const scale = peakOf.get(r.gene);
    let first = -1, last = -1;
    r.bins.forEach((c, i) => {
      if (c > 0) {
        if (first < 0) first = i;
        last = i;
      }
    });
    const points = [{ x: edges[first], h: 0 }];
    for (let i = first; i <= last; i++) points.push({ x: (edges[i] + edges[i + 1]) / 2, h: r.bins[i] / r.n_cells / scale });
    points.push({ x: edges[last + 1], h: 0 });
    let peak = 0;
    for (const p of points) peak = Math.max(peak, p.h);
    shapes.set(r, { points, peak });
    top = Math.max(top, edges[last + 1]);
  }
  return { shapes, top };
}

// A row gets a violin when it has a histogram and some expressing cells.
export function drawable(r) {
  return r.bins != null && r.zeros != null && r.zeros < r.n_cells;
}
