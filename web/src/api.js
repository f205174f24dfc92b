// The HTTP API client (docs/API.md). Every call takes an AbortSignal so a newer
// request cancels a stale one; answers are cached by URL, so switching the plot type,
// the colour or the order redraws without asking the server again.

import { toQueryString } from "./state.js";

export const ALL_METRICS = ["n_cells", "nnz", "frac", "mean", "mean_expr", "sum", "var", "std"];

export class ApiError extends Error {
  // kind: "network" (server unreachable), "http" (4xx/5xx with the server's message)
  constructor(message, { kind = "http", status = 0 } = {}) {
    super(message);
    this.kind = kind;
    this.status = status;
  }
}

const cache = new Map();
const CACHE_SIZE = 60;

export function apiUrl(path, pairs = []) {
  const qs = toQueryString(pairs.filter(([, v]) => v !== "" && v != null));
  return qs ? `${path}?${qs}` : path;
}

async function request(url, signal, as = "json") {
  let res;
  try {
    res = await fetch(url, { signal, headers: { accept: as === "json" ? "application/json" : "text/csv" } });
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new ApiError("The cellcube server cannot be reached.", { kind: "network" });
  }
  if (!res.ok) {
    let message = `The server answered ${res.status} ${res.statusText}.`;
    try {
      const body = await res.json();
      if (body && body.error) message = body.error;
    } catch {
      /* not JSON: keep the status line */
    }
    throw new ApiError(message, { status: res.status });
  }
  return as === "json" ? res.json() : res.text();
}

export async function get(path, pairs, signal, { as = "json", cached = true } = {}) {
  const url = apiUrl(path, pairs);
  if (cached && cache.has(url)) {
    const hit = cache.get(url);
    cache.delete(url); // keep most recent last
    cache.set(url, hit);
    return hit;
  }
  let value = await request(url, signal, as);
  if (as === "json" && path === "/api/v1/query") value = expandRows(value);
  if (cached) {
    cache.set(url, value);
    if (cache.size > CACHE_SIZE) cache.delete(cache.keys().next().value);
  }
  return value;
}

// The population of every request (/query, /counts, /de): the where filters and the
// chosen datasets, spelt one way; the server facets /counts on the datasets as on any
// other column.
export function populationPairs(state) {
  const pairs = state.where.map(([c, v]) => ["where", `${c}:${v}`]);
  if (state.datasets.length) pairs.push(["datasets", state.datasets.join(",")]);
  if (state.rollup?.length) pairs.push(["rollup", state.rollup.join(",")]);
  return pairs;
}

export function queryPairs(state, genes, by, metrics = ALL_METRICS, format) {
  const pairs = [["genes", genes.join(",")]];
  if (by.length) pairs.push(["by", by.join(",")]);
  pairs.push(...populationPairs(state), ["metrics", metrics.join(",")]);
  // JSON in the compact layout (a third of the bytes); expandRows turns it back into rows.
  pairs.push(format ? ["format", format] : ["layout", "compact"]);
  return pairs;
}

// A layout=compact answer (each split's labels and each gene once, rows as arrays
// [split, gene, ...metrics]) as row objects keyed by the answer's columns.
// A rolled-up column is followed by its depth column ("depth", or "COL_depth"), whose
// values come in split_depth; an ontology-backed one's term ids in split_terms, given to
// the rows as COL_ontology_term_id (docs/ONTOLOGY.md).
export function splitColumns(columns) {
  const nBy = columns.indexOf("gene");
  const labels = [], depths = [];
  for (let i = 0; i < nBy; i++) {
    const c = columns[i], prev = labels[labels.length - 1];
    if (prev !== undefined && (c === "depth" || c === `${prev}_depth`)) depths.push(c);
    else labels.push(c);
  }
  return { labels, depths };
}

export function expandRows(answer) {
  if (!answer || !answer.splits) return answer;
  const nBy = answer.columns.indexOf("gene");
  const metrics = answer.columns.slice(nBy + 1);
  const { labels: byCols, depths } = splitColumns(answer.columns);
  const rows = answer.rows.map((r) => {
    const row = {};
    const labels = answer.splits[r[0]];
    for (let i = 0; i < byCols.length; i++) row[byCols[i]] = labels[i];
    if (answer.split_terms)
      for (let i = 0; i < byCols.length; i++) row[`${byCols[i]}_ontology_term_id`] = answer.split_terms[r[0]][i];
    for (let i = 0; i < depths.length; i++) row[depths[i]] = answer.split_depth[r[0]][i];
    row.gene = answer.genes[r[1]].id;
    for (let k = 0; k < metrics.length; k++) row[metrics[k]] = r[2 + k];
    return row;
  });
  return { ...answer, rows };
}

// "unknown gene 'CD3X' (did you mean 'CD3E', 'CD3D'?)" -> {gene: "CD3X", suggestions: [...]}
export function parseUnknownGene(message) {
  const m = /unknown gene '([^']*)'/i.exec(message);
  if (!m) return null;
  const rest = message.slice(m.index + m[0].length);
  const suggestions = [...rest.matchAll(/'([^']+)'/g)].map((x) => x[1]);
  return { gene: m[1], suggestions };
}
