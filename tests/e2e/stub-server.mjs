// A stand-in for `cellcube serve`: implements docs/API.md over a small synthetic
// store generated in memory (seeded, so every run answers the same). It exists to
// develop the web page and to run the browser tests where the real binary has no
// `serve` command yet; the tests prefer the real binary whenever it has one.
//
//   node tests/e2e/stub-server.mjs [--port 8080] [--dist web/dist] [--delay-ms 0]

import http from "node:http";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const METRICS = ["n_cells", "nnz", "frac", "sum", "mean", "mean_expr", "var", "std"];

function rng(seed) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const CELL_TYPES = {
  "CD4-positive, alpha-beta T cell": ["CD3E", "CD3D", "CD4", "IL7R", "CCR7", "LTB"],
  "CD8-positive, alpha-beta T cell": ["CD3E", "CD3D", "CD8A", "CD8B", "GZMK", "CCL5"],
  "natural killer cell": ["NKG7", "GNLY", "KLRD1", "PRF1", "GZMB"],
  "B cell": ["MS4A1", "CD79A", "CD79B", "CD19", "BANK1"],
  "plasma cell": ["JCHAIN", "MZB1", "IGHG1", "XBP1"],
  "classical monocyte": ["CD14", "LYZ", "S100A8", "S100A9", "FCN1"],
  "non-classical monocyte": ["FCGR3A", "MS4A7", "CX3CR1", "LYZ"],
  "alveolar macrophage": ["MARCO", "MSR1", "FABP4", "CD68"],
  "type II pneumocyte": ["SFTPC", "SFTPB", "SFTPA1", "NAPSA"],
  "malignant cell": ["EPCAM", "KRT8", "KRT18", "MKI67", "TOP2A"],
};
const LUNG_ONLY = new Set(["alveolar macrophage", "type II pneumocyte", "malignant cell"]);
const HOUSEKEEPING = ["MALAT1", "ACTB", "GAPDH", "B2M", "TMSB4X", "EEF1A1", "FTL", "MT-CO1"];
const DISEASE_GENES = ["ISG15", "IFI6", "MX1", "SPP1", "MMP7", "VEGFA"];
const LUNG_GENES = new Set(["SFTPC", "SFTPB", "SFTPA1", "NAPSA", "MARCO"]);

export function makeStore(seed = 3) {
  const r = rng(seed);
  const symbols = [...new Set([...Object.values(CELL_TYPES).flat(), ...HOUSEKEEPING, ...DISEASE_GENES])];
  for (let i = 0; symbols.length < 120; i++) symbols.push(`LINC${String(1000 + i * 7)}`);
  const genes = symbols.map((s, i) => ({ id: `ENSG${String(100000 + i * 37).padStart(11, "0")}`, symbol: s }));
  const datasets = [
    { name: "lung_tumor", tissue: "lung", disease: "lung adenocarcinoma", measured: genes.map(() => true) },
    { name: "blood_covid", tissue: "blood", disease: "COVID-19", measured: genes.map((g) => !LUNG_GENES.has(g.symbol)) },
  ];
  const profiles = genes.map(() => ({ base: 0.02 + 0.1 * r(), mu: 0.4 + 0.8 * r() }));
  const groups = [];
  for (const [di, d] of datasets.entries()) {
    for (let donor = 0; donor < 5; donor++) {
      const sex = r() < 0.5 ? "female" : "male";
      const ill = donor < 3;
      const disease = ill ? d.disease : "normal";
      const stage = ill && d.tissue === "lung" ? ["I", "II", "III"][donor] : "NA";
      for (const [ct, markers] of Object.entries(CELL_TYPES)) {
        if (d.tissue !== "lung" && LUNG_ONLY.has(ct)) continue;
        if (ct === "malignant cell" && !ill) continue;
        const n = Math.round(20 + 150 * r());
        const stats = genes.map((g, gi) => {
          if (!d.measured[gi]) return null;
          let p = profiles[gi].base, mu = profiles[gi].mu;
          if (markers.includes(g.symbol)) { p = 0.6 + 0.35 * r(); mu = 1.8 + r(); }
          if (HOUSEKEEPING.includes(g.symbol)) { p = 0.9; mu = 2.5 + 0.5 * r(); }
          if (ill && DISEASE_GENES.includes(g.symbol)) { p = Math.min(0.95, p * 5); mu *= 1.8; }
          p = Math.min(1, p * (0.8 + 0.4 * r()));
          const nnz = Math.round(n * p);
          const m = mu * (0.85 + 0.3 * r());
          return { nnz, sum: nnz * m, sumsq: nnz * (m * m + 0.25) };
        });
        groups.push({
          values: { dataset: d.name, cell_type: ct, tissue: d.tissue, disease, cancer_stage: stage, sex, donor: `${d.name}_D${donor + 1}` },
          di, n, stats,
        });
      }
    }
  }
  const colNames = ["dataset", "cell_type", "tissue", "disease", "cancer_stage", "sex", "donor"];
  return { name: "stub_atlas.h5ad", genes, datasets, groups, colNames };
}

function levenshtein(a, b) {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++)
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
  return d[a.length][b.length];
}

class BadRequest extends Error {}

function counts(store, where, datasets) {
  const cols = store.colNames.map((name) => {
    const m = new Map();
    for (const g of store.groups) if (!m.has(g.values[name])) m.set(g.values[name], 0);
    return { name, m };
  });
  let total = 0;
  for (const g of store.groups) {
    if (datasets && !datasets.has(g.values.dataset)) continue;
    const fails = Object.keys(where).filter((c) => !where[c].has(g.values[c]));
    if (fails.length === 0) total += g.n;
    for (const c of cols) {
      if (fails.length === 0 || (fails.length === 1 && fails[0] === c.name)) c.m.set(g.values[c.name], c.m.get(g.values[c.name]) + g.n);
    }
  }
  return { cols, total };
}

function parseSelection(store, q) {
  const where = {};
  for (const w of q.getAll("where")) {
    const i = w.indexOf(":");
    if (i <= 0) throw new BadRequest(`malformed where '${w}' (expected COLUMN:VALUE)`);
    const col = w.slice(0, i), val = w.slice(i + 1);
    if (!store.colNames.includes(col)) throw new BadRequest(`unknown column '${col}'`);
    if (!store.groups.some((g) => g.values[col] === val)) throw new BadRequest(`unknown value '${val}' in column '${col}'`);
    (where[col] ??= new Set()).add(val);
  }
  let datasets = null;
  if (q.get("datasets")) {
    datasets = new Set(q.get("datasets").split(","));
    for (const d of datasets) if (!store.datasets.some((x) => x.name === d)) throw new BadRequest(`unknown dataset '${d}'`);
  }
  return { where, datasets };
}

function query(store, q) {
  const genesParam = (q.get("genes") || "").split(",").filter(Boolean);
  if (!genesParam.length) throw new BadRequest("genes is required");
  if (genesParam.length > 200) throw new BadRequest("too many genes (at most 200)");
  const genes = genesParam.map((name) => {
    const lc = name.toLowerCase();
    const gi = store.genes.findIndex((g) => g.symbol.toLowerCase() === lc || g.id.toLowerCase() === lc);
    if (gi < 0) {
      const near = store.genes.map((g) => [levenshtein(lc, g.symbol.toLowerCase()), g.symbol]).sort((a, b) => a[0] - b[0]).slice(0, 3).filter((x) => x[0] <= 2).map((x) => `'${x[1]}'`);
      throw new BadRequest(`unknown gene '${name}'` + (near.length ? ` (did you mean ${near.join(", ")}?)` : ""));
    }
    return { query: name, gi };
  });
  const by = (q.get("by") || "").split(",").filter(Boolean);
  if (by.length > 4) throw new BadRequest("at most 4 columns in by");
  for (const c of by) if (!store.colNames.includes(c)) throw new BadRequest(`unknown column '${c}'`);
  const metrics = (q.get("metrics") || "n_cells,frac,mean").split(",");
  for (const m of metrics) if (!METRICS.includes(m)) throw new BadRequest(`unknown metric '${m}'`);
  const { where, datasets } = parseSelection(store, q);
  const acc = new Map();
  for (const g of store.groups) {
    if (datasets && !datasets.has(g.values.dataset)) continue;
    if (Object.keys(where).some((c) => !where[c].has(g.values[c]))) continue;
    const key = by.map((c) => g.values[c]).join("\u0000");
    if (!acc.has(key)) acc.set(key, { values: by.map((c) => g.values[c]), per: genes.map(() => ({ n: 0, nnz: 0, sum: 0, sumsq: 0 })) });
    const a = acc.get(key);
    genes.forEach((ge, k) => {
      const s = g.stats[ge.gi];
      if (!s) return;
      a.per[k].n += g.n; a.per[k].nnz += s.nnz; a.per[k].sum += s.sum; a.per[k].sumsq += s.sumsq;
    });
  }
  const rows = [];
  for (const a of acc.values()) {
    genes.forEach((ge, k) => {
      const p = a.per[k];
      if (p.n === 0) return;
      const v = p.n > 1 ? Math.max(0, (p.sumsq - (p.sum * p.sum) / p.n) / (p.n - 1)) : null;
      const all = { n_cells: p.n, nnz: p.nnz, frac: p.nnz / p.n, sum: p.sum, mean: p.sum / p.n, mean_expr: p.nnz ? p.sum / p.nnz : null, var: v, std: v === null ? null : Math.sqrt(v) };
      const row = {};
      by.forEach((c, i) => (row[c] = a.values[i]));
      row.gene = store.genes[ge.gi].id;
      for (const m of metrics) row[m] = all[m];
      rows.push(row);
    });
  }
  return {
    columns: [...by, "gene", ...metrics],
    rows,
    genes: genes.map((ge) => ({
      query: ge.query, id: store.genes[ge.gi].id, symbol: store.genes[ge.gi].symbol,
      not_measured_in: store.datasets.filter((d) => !d.measured[ge.gi]).map((d) => d.name),
    })),
    took_us: 12,
  };
}

// /api/v1/distribution: each group's expressing cells spread over the 64 bins around its
// mean in expressing cells (sd 0.5), summed per split like the real roll-up.
const HIST_MAX = Math.log(10001);
const EDGES = Array.from({ length: 65 }, (_, i) => (i === 64 ? HIST_MAX : (i * HIST_MAX) / 64));

function binsOf(s) {
  const bins = new Array(64).fill(0);
  if (!s || s.nnz === 0) return bins;
  const m = s.sum / s.nnz;
  const weights = bins.map((_, i) => Math.exp(-(((EDGES[i] + EDGES[i + 1]) / 2 - m) ** 2) / 0.5));
  const total = weights.reduce((a, b) => a + b, 0);
  const exact = weights.map((x) => (s.nnz * x) / total);
  exact.forEach((x, i) => (bins[i] = Math.floor(x)));
  let left = s.nnz - bins.reduce((a, b) => a + b, 0);
  for (const i of exact.map((x, i) => [x - Math.floor(x), i]).sort((a, b) => b[0] - a[0]).map((x) => x[1])) {
    if (left-- <= 0) break;
    bins[i]++;
  }
  return bins;
}

function distribution(store, q) {
  const a = query(store, q);
  const by = a.columns.slice(0, a.columns.indexOf("gene"));
  const { where, datasets } = parseSelection(store, q);
  const rows = a.rows.map((row) => {
    const gi = store.genes.findIndex((g) => g.id === row.gene);
    const bins = new Array(64).fill(0);
    let n = 0;
    for (const g of store.groups) {
      if (datasets && !datasets.has(g.values.dataset)) continue;
      if (Object.keys(where).some((c) => !where[c].has(g.values[c]))) continue;
      if (by.some((c) => g.values[c] !== row[c]) || !g.stats[gi]) continue;
      n += g.n;
      (g.bins ??= [])[gi] ??= binsOf(g.stats[gi]);
      g.bins[gi].forEach((c, i) => (bins[i] += c));
    }
    const out = {};
    for (const c of by) out[c] = row[c];
    return { ...out, gene: row.gene, n_cells: n, zeros: n - bins.reduce((x, y) => x + y, 0), bins };
  });
  return { columns: [...by, "gene", "n_cells", "zeros"], edges: EDGES, genes: a.genes, rows, notes: [], took_us: 15 };
}

function distributionCsv(answer) {
  const cols = answer.columns;
  const head = [...cols, ...Array.from({ length: 64 }, (_, i) => `bin_${String(i).padStart(2, "0")}`)];
  return [head.join(","), ...answer.rows.map((r) => [...cols.map((c) => (/[",]/.test(String(r[c])) ? `"${String(r[c]).replace(/"/g, '""')}"` : r[c])), ...r.bins].join(","))].join("\n") + "\n";
}

function csv(answer) {
  const esc = (v) => (v === null || v === undefined ? "" : /[",\n\r]/.test(String(v)) ? `"${String(v).replace(/"/g, '""')}"` : String(v));
  return [answer.columns.join(","), ...answer.rows.map((r) => answer.columns.map((c) => esc(r[c])).join(","))].join("\n") + "\n";
}

function meta(store) {
  const { cols, total } = counts(store, {}, null);
  return {
    store: store.name, n_cells: total, n_genes: store.genes.length, n_groups: store.groups.length,
    datasets: store.datasets.map((d) => ({
      name: d.name, n_genes: d.measured.filter(Boolean).length, transform: "cp10k_log1p",
      n_cells: store.groups.filter((g) => g.values.dataset === d.name).reduce((s, g) => s + g.n, 0),
    })),
    columns: cols.map((c) => ({ name: c.name, values: [...c.m].map(([value, n_cells]) => ({ value, n_cells })) })),
    metrics: METRICS, has_donor: true, donor_column: "donor",
  };
}

const TYPES = { ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8" };

export function startStub({ port = 0, dist, delayMs = 0 } = {}) {
  const store = makeStore();
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, "http://x");
    const send = (code, body, type = "application/json") => {
      res.writeHead(code, { "content-type": type, "cache-control": "no-store" });
      res.end(typeof body === "string" ? body : JSON.stringify(body));
    };
    const handle = () => {
      try {
        const p = url.pathname;
        if (p === "/healthz") return send(200, { status: "ok", store: store.name, generation: 1 });
        if (p === "/api/v1/meta") return send(200, meta(store));
        if (p === "/api/v1/genes") {
          const qq = (url.searchParams.get("q") || "").toLowerCase();
          const limit = Math.min(100, Number(url.searchParams.get("limit") || 20));
          const bySym = store.genes.filter((g) => g.symbol.toLowerCase().startsWith(qq));
          const byId = store.genes.filter((g) => g.id.toLowerCase().startsWith(qq) && !bySym.includes(g));
          return send(200, { genes: [...bySym, ...byId].slice(0, limit) });
        }
        if (p === "/api/v1/counts") {
          const { where, datasets } = parseSelection(store, url.searchParams);
          const { cols, total } = counts(store, where, datasets);
          return send(200, { columns: cols.map((c) => ({ name: c.name, values: [...c.m].map(([value, n_cells]) => ({ value, n_cells })) })), n_cells: total });
        }
        if (p === "/api/v1/query") {
          const a = query(store, url.searchParams);
          if (url.searchParams.get("format") === "csv") return send(200, csv(a), "text/csv; charset=utf-8");
          return send(200, a);
        }
        if (p === "/api/v1/distribution") {
          const a = distribution(store, url.searchParams);
          if (url.searchParams.get("format") === "csv") return send(200, distributionCsv(a), "text/csv; charset=utf-8");
          return send(200, a);
        }
        if (dist && (p === "/" || p.startsWith("/assets/"))) {
          const file = p === "/" ? "index.html" : `assets/${path.basename(p)}`;
          const full = path.join(dist, file);
          if (fs.existsSync(full)) return send(200, fs.readFileSync(full, "utf8"), TYPES[path.extname(file)] || "application/octet-stream");
        }
        return send(404, { error: `no such path '${p}'` });
      } catch (e) {
        if (e instanceof BadRequest) return send(400, { error: e.message });
        return send(500, { error: String(e) });
      }
    };
    if (delayMs > 0 && url.pathname.startsWith("/api/")) setTimeout(handle, delayMs);
    else handle();
  });
  return new Promise((resolve) => server.listen(port, "127.0.0.1", () => resolve(server)));
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const arg = (name, def) => {
    const i = process.argv.indexOf(`--${name}`);
    return i > 0 ? process.argv[i + 1] : def;
  };
  const here = path.dirname(fileURLToPath(import.meta.url));
  const dist = path.resolve(arg("dist", path.join(here, "../../web/dist")));
  startStub({ port: Number(arg("port", 8080)), dist, delayMs: Number(arg("delay-ms", 0)) }).then((s) =>
    console.log(`stub cellcube server on http://127.0.0.1:${s.address().port}/ (serving ${dist})`));
}
