// Hierarchical clustering for the "clustered" order of rows and genes: average
// linkage (UPGMA) on Euclidean distances between the plotted values, giving the
// dendrogram (the heatmap draws it) and its leaf order. O(n³) in the number of items,
// which is instant for the few hundred rows or genes a plot can show.

// The dendrogram's leaf order: the items' indices, left to right.
export function clusterOrder(vectors) {
  return leafOrder(clusterTree(vectors));
}

export function leafOrder(node, out = []) {
  if (node == null) return out;
  if (node.leaf != null) out.push(node.leaf);
  else {
    leafOrder(node.left, out);
    leafOrder(node.right, out);
  }
  return out;
}

// The dendrogram: a leaf is {leaf: index}; a merge is {left, right, height}, its height
// the average distance between the two clusters' members (non-decreasing towards the
// root). Null for no items.
export function clusterTree(vectors) {
  const n = vectors.length;
  if (n === 0) return null;
  const dist = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      let s = 0;
      const a = vectors[i], b = vectors[j];
      for (let k = 0; k < a.length; k++) {
        const d = (a[k] || 0) - (b[k] || 0);
        s += d * d;
      }
      dist[i * n + j] = dist[j * n + i] = Math.sqrt(s);
    }
  }
  // Cluster c lives in slot c (the slot of its first member); size and leaves per slot.
  const alive = Array.from({ length: n }, (_, i) => i);
  const size = new Array(n).fill(1);
  const node = Array.from({ length: n }, (_, i) => ({ leaf: i }));
  while (alive.length > 1) {
    let best = Infinity, bi = 0, bj = 1;
    for (let x = 0; x < alive.length; x++) {
      const i = alive[x];
      for (let y = x + 1; y < alive.length; y++) {
        const d = dist[i * n + alive[y]];
        if (d < best) { best = d; bi = x; bj = y; }
      }
    }
    const i = alive[bi], j = alive[bj];
    // New distances: size-weighted average of the two merged clusters' distances.
    for (const k of alive) {
      if (k === i || k === j) continue;
      const d = (dist[i * n + k] * size[i] + dist[j * n + k] * size[j]) / (size[i] + size[j]);
      dist[i * n + k] = dist[k * n + i] = d;
    }
    node[i] = { left: node[i], right: node[j], height: best };
    size[i] += size[j];
    alive.splice(bj, 1);
  }
  return node[alive[0]];
}
