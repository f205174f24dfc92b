"""`cellcube serve`: the HTTP API of docs/API.md, checked from outside over real sockets.

The store is built from `cellcube synth` output (2 datasets x 3000 cells x 400 genes,
seed 5). The datasets measure partly different genes, and one dataset lacks columns the
other has, so the store has missing values (NA) and genes "not measured in" a dataset.
Every expected value is computed here, independently of the server:

 1. /api/v1/query: the JSON objects layout against sums of the store's own layers read
    with anndata (n_cells, nnz, sum, sumsq pooled over the selected groups with pandas)
    and against `cellcube query ... --format csv` parsed with pandas; format=csv byte
    for byte against the CLI; layout=compact expanded against the objects layout;
    splits by 0, 1, 2 and 4 columns; repeated where (OR within a column, AND across);
    where with NA and with a value containing ','; datasets; metrics; the genes entries
    (not_measured_in, from the store's uns/cellcube/measured_*); an empty selection.
 2. Errors: 400 {"error": ...} for every bad query, unknown gene with suggestions,
    limits on genes (200), by columns (4), where values (50), unknown parameters,
    bad format/layout, invalid UTF-8 (percent-encoded and raw bytes).
 3. /api/v1/meta, /api/v1/counts (faceted counts against pandas on the store's obs),
    /api/v1/genes (prefix search against the store's var), /healthz.
 4. Static files, ETag / If-None-Match, 404s, path traversal (the server runs with the
    repository as its working directory, so a path mapped to the file system would hit).
 5. Limits: header size, query-string size, request bodies, methods, HEAD, keep-alive.
 6. Hot reload under a querying client (cellcube add; a corrupt file renamed over the
    store; the good file back) with no failed request.
 7. SIGTERM: exit code 0 within 5 s; a request in flight completes.
"""

from __future__ import annotations

import http.client
import io
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import helpers
import query_reference as qr
import store_format

warnings.filterwarnings("ignore")

# The metrics checked here against the store's layers; the distribution metrics are
# checked against the cells in test_distributions.py.
ALL_METRICS = ["n_cells", "nnz", "frac", "sum", "mean", "mean_expr", "var", "std"]
META_METRICS = ALL_METRICS + ["median", "q05", "q25", "q75", "q95", "median_expr", "max"]
DEFAULT_METRICS = ["n_cells", "frac", "mean"]
INT_METRICS = {"n_cells", "nnz"}
DONOR_NAMES = ["donor", "donor_id", "individual"]


# --------------------------------------------------------------------------
# HTTP helpers (standard library only)
# --------------------------------------------------------------------------


class Resp:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = {k.lower(): v for k, v in headers}
        self.header_list = headers
        self.body = body

    def json(self):
        try:
            return json.loads(self.body.decode("utf-8"), parse_constant=helpers._reject_constant)
        except (UnicodeDecodeError, ValueError) as e:
            pytest.fail(f"response is not UTF-8 JSON ({e}): status {self.status}, body {self.body[:300]!r}",
                        pytrace=False)

    def __repr__(self):
        return f"<{self.status} {self.headers.get('content-type')} {self.body[:300]!r}>"


def target(path, params=()):
    """path?query with params a list of (key, value) pairs (repeats kept)."""
    if not params:
        return path
    return path + "?" + urllib.parse.urlencode(list(params), quote_via=urllib.parse.quote)


def request(port, tgt, method="GET", headers=None, timeout=20):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, tgt, headers=headers or {})
        r = conn.getresponse()
        return Resp(r.status, r.getheaders(), r.read())
    finally:
        conn.close()


def get(port, path, params=(), **kw):
    return request(port, target(path, params), **kw)


def raw_request(port, data: bytes, timeout=10):
    """Sends raw bytes, reads until the server closes (or the timeout); returns
    (status or None, headers dict, body bytes, everything received)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    got = b""
    try:
        s.sendall(data)
        while True:
            try:
                b = s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not b:
                break
            got += b
            head, sep, body = got.partition(b"\r\n\r\n")
            if sep:
                hdrs = _parse_headers(head)
                n = hdrs.get("content-length")
                if n is not None and len(body) >= int(n):
                    break
    finally:
        s.close()
    head, sep, body = got.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = None
    if lines and lines[0].startswith(b"HTTP/1."):
        try:
            status = int(lines[0].split()[1])
        except (IndexError, ValueError):
            status = None
    return status, _parse_headers(head), body, got


def _parse_headers(head: bytes) -> dict:
    out = {}
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        out[k.decode("latin-1").strip().lower()] = v.decode("latin-1").strip()
    return out


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Server:
    """`cellcube serve STORE --port P --quiet` as a subprocess; its output goes to a log file."""

    def __init__(self, cellcube, store, logdir, cwd=None, env=None, extra_args=()):
        self.store = Path(store)
        self.log_path = Path(logdir) / f"serve-{time.time_ns()}.log"
        last = None
        for _ in range(5):  # the free port may be taken between free_port() and bind
            self.port = free_port()
            self.log = open(self.log_path, "w+")
            self.proc = subprocess.Popen(
                [str(cellcube), "serve", str(store), "--port", str(self.port), "--quiet", *extra_args],
                stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=cwd,
                env=None if env is None else {**os.environ, **env})
            last = self._wait_ready()
            if last is None:
                return
            self.stop()
        pytest.fail(f"cellcube serve did not start: {last}", pytrace=False)

    def _wait_ready(self, timeout=15):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return f"exited with {self.proc.returncode}: {self.output()}"
            try:
                r = request(self.port, "/healthz", timeout=2)
                if r.status == 200:
                    return None
            except OSError:
                pass
            time.sleep(0.05)
        return f"no answer on /healthz within {timeout}s: {self.output()}"

    def output(self):
        try:
            return self.log_path.read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def generation(self):
        r = get(self.port, "/healthz")
        assert r.status == 200, r
        return r.json()["generation"]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=8)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.log.close()


def run_ok(args, **kw):
    proc = helpers.run(args, **kw)
    assert proc.returncode == 0, "command failed\n" + helpers.describe(proc)
    return proc


# --------------------------------------------------------------------------
# the independent reference: the store read with anndata
# --------------------------------------------------------------------------


class StoreRef:
    """The store's obs, var, layers and measured genes, read with anndata/scipy."""

    def __init__(self, path):
        import anndata

        a = anndata.read_h5ad(path)
        obs = a.obs
        self.path = Path(path)
        self.columns = [str(c) for c in obs.columns if c != "n_cells"]
        self.categories = {c: [str(x) for x in obs[c].cat.categories] for c in self.columns}
        self.labels = {c: np.array(["NA" if pd.isna(x) else str(x) for x in obs[c].astype(object)], dtype=object)
                       for c in self.columns}
        self.n_cells = obs["n_cells"].to_numpy().astype(np.int64)
        self.n_groups = len(obs)
        self.gene_ids = [str(g) for g in a.var_names]
        self.symbols = [("" if not isinstance(s, str) else s) for s in a.var["symbol"].tolist()]
        self.layers = {k: sp.csc_matrix(a.layers[k]) for k in ("nnz", "sum")}
        self.layers["sumsq"] = store_format.sumsq_layer(a.layers, self.n_cells)
        uns = a.uns["cellcube"]
        self.records = uns["datasets"]
        self.datasets = [str(x) for x in self.records.index]
        lists = store_format.measured_gene_lists(uns, len(self.datasets), len(self.gene_ids))
        self.measured = {d: set(int(j) for j in lists[k]) for k, d in enumerate(self.datasets)}

    # -- genes
    def resolve(self, token):
        t = token.lower()
        ids = [j for j, g in enumerate(self.gene_ids) if g.lower() == t]
        return ids or [j for j, s in enumerate(self.symbols) if s and s.lower() == t]

    def measured_everywhere(self):
        return [j for j in range(len(self.gene_ids)) if all(j in m for m in self.measured.values())]

    def only_in(self, d):
        return [j for j in range(len(self.gene_ids))
                if j in self.measured[d] and all(j not in self.measured[o] for o in self.datasets if o != d)]

    # -- selection
    def filters(self, where, datasets):
        f = {}
        if datasets:
            f["dataset"] = np.isin(self.labels["dataset"], list(datasets))
        for col, vals in (where or {}).items():
            m = np.isin(self.labels[col], list(vals))
            f[col] = f[col] & m if col in f else m
        return f

    def mask(self, where, datasets, skip=None):
        m = np.ones(self.n_groups, dtype=bool)
        for col, fm in self.filters(where, datasets).items():
            if col != skip:
                m &= fm
        return m

    def expected_query(self, genes, by, where, datasets, metrics):
        """{(split labels..., gene id): {metric: value}} for the rows with n_cells > 0."""
        metrics = metrics or DEFAULT_METRICS
        sel = self.mask(where, datasets)
        ids = []
        for tok in genes:
            for j in self.resolve(tok):
                if j not in ids:
                    ids.append(j)
        out = {}
        ds = self.labels["dataset"]
        for j in ids:
            measured = np.array([j in self.measured[d] for d in ds])
            df = pd.DataFrame({c: self.labels[c] for c in by})
            df["n"] = np.where(measured, self.n_cells, 0)
            for k in ("nnz", "sum", "sumsq"):
                df[k] = np.asarray(self.layers[k][:, j].toarray(), dtype=np.float64).ravel()
            df = df[sel]
            if by:
                agg = df.groupby(list(by), sort=False)[["n", "nnz", "sum", "sumsq"]].sum()
                items = [((k,) if len(by) == 1 else tuple(k), row) for k, row in agg.iterrows()]
            else:
                items = [((), df[["n", "nnz", "sum", "sumsq"]].sum())]
            for key, row in items:
                n, nnz, s, ss = int(row["n"]), int(row["nnz"]), float(row["sum"]), float(row["sumsq"])
                if n == 0:
                    continue
                var = max(0.0, (ss - s * s / n) / (n - 1)) if n >= 2 else None
                vals = {"n_cells": n, "nnz": nnz, "frac": nnz / n, "sum": s, "mean": s / n,
                        "mean_expr": s / nnz if nnz > 0 else None, "var": var,
                        "std": math.sqrt(var) if var is not None else None,
                        "_sumsq": ss}
                out[tuple(str(x) for x in key) + (self.gene_ids[j],)] = vals
        return out

    def expected_counts(self, where, datasets):
        out = {}
        for c in self.columns:
            m = self.mask(where, datasets, skip=c)
            s = pd.Series(self.n_cells[m]).groupby(self.labels[c][m]).sum()
            out[c] = {str(v): int(n) for v, n in s.items() if n > 0}
        return out, int(self.n_cells[self.mask(where, datasets)].sum())


def compare_to_reference(rows, want, by, metrics):
    """Problems between API row objects and StoreRef.expected_query."""
    metrics = metrics or DEFAULT_METRICS
    problems = []
    got = {}
    for r in rows:
        key = tuple(r[c] for c in by) + (r["gene"],)
        if key in got:
            problems.append(f"duplicate row {key}")
        got[key] = r
    if set(got) != set(want):
        problems.append(f"row keys differ: missing {sorted(set(want) - set(got))[:5]}, "
                        f"unexpected {sorted(set(got) - set(want))[:5]}")
    for key in sorted(set(got) & set(want)):
        g, w = got[key], want[key]
        for m in metrics:
            gv, wv = g.get(m, "<absent>"), w[m]
            if wv is None or gv is None:
                ok = gv is None and wv is None
            elif m in INT_METRICS:
                ok = isinstance(gv, int) and not isinstance(gv, bool) and gv == wv
            else:
                scale = abs(wv)
                if m == "var":
                    scale = max(scale, w["_sumsq"] / max(1, w["n_cells"] - 1))
                elif m == "std":
                    scale = max(scale, math.sqrt(w["_sumsq"] / max(1, w["n_cells"] - 1)) * 1e-3)
                ok = isinstance(gv, (int, float)) and not isinstance(gv, bool) and abs(gv - wv) <= 1e-6 * scale + 1e-12
            if not ok:
                problems.append(f"{key} {m}: got {gv!r}, want {wv!r}")
    return problems


def parse_csv_rows(text, by, metrics):
    """CSV text (CLI or API) -> list of row dicts typed like the JSON rows."""
    metrics = metrics or DEFAULT_METRICS
    df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    assert list(df.columns) == list(by) + ["gene"] + list(metrics), f"CSV header {list(df.columns)}"
    rows = []
    for rec in df.to_dict("records"):
        row = {}
        for c in list(by) + ["gene"]:
            row[c] = rec[c]
        for m in metrics:
            v = rec[m]
            row[m] = None if v == "" else (int(v) if m in INT_METRICS else float(v))
        rows.append(row)
    return rows


def query_params(genes, by=(), where=None, datasets=None, metrics=None, extra=()):
    p = [("genes", ",".join(genes))]
    if by:
        p.append(("by", ",".join(by)))
    for col, vals in (where or {}).items():
        for v in vals:
            p.append(("where", f"{col}:{v}"))
    if datasets:
        p.append(("datasets", ",".join(datasets)))
    if metrics:
        p.append(("metrics", ",".join(metrics)))
    return p + list(extra)


def cli_args(genes, by=(), where=None, datasets=None, metrics=None):
    a = ["--genes", ",".join(genes)]
    if by:
        a += ["--by", ",".join(by)]
    for col, vals in (where or {}).items():
        for v in vals:
            a += ["--where", f"{col}={v}"]
    if datasets:
        a += ["--datasets", ",".join(datasets)]
    if metrics:
        a += ["--metrics", ",".join(metrics)]
    return a


def assert_api_error(r, status=400, mentions=(), any_of=()):
    assert r.status == status, f"expected {status}, got {r!r}"
    assert r.headers.get("content-type", "").startswith("application/json"), r
    doc = r.json()
    assert isinstance(doc, dict) and list(doc) == ["error"], f"error body must be {{\"error\": ...}}: {doc!r}"
    msg = doc["error"]
    assert isinstance(msg, str) and msg and "\n" not in msg, f"error must be one line: {msg!r}"
    low = msg.lower()
    for m in mentions:
        assert str(m).lower() in low, f"error {msg!r} should mention {m!r}"
    if any_of:
        assert any(str(m).lower() in low for m in any_of), f"error {msg!r} should mention one of {any_of!r}"
    return msg


# --------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cc():
    """The cellcube binary ($CELLCUBE_BUILD, $CELLCUBE_BIN's directory, else <repo>/build)."""
    return qr.cellcube_binary()


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("server")


@pytest.fixture(scope="module")
def store(cc, work):
    syn = work / "synth"
    run_ok([cc, "synth", "-o", syn, "--datasets", "2", "--cells", "3000", "--genes", "400", "--seed", "5",
            "--quiet"])
    inputs = sorted(syn.glob("*.h5ad"))
    assert len(inputs) == 2, inputs
    out = work / "store.h5ad"
    run_ok([cc, "build", "-o", out, *inputs, "--quiet"])
    return out


@pytest.fixture(scope="module")
def ref(store):
    r = StoreRef(store)
    assert len(r.datasets) == 2
    return r


@pytest.fixture(scope="module")
def server(cc, store, work):
    # cwd = the repository: a server mapping URL paths to files would find README.md etc.
    s = Server(cc, store, work, cwd=helpers.REPO)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def names(ref):
    """Genes and values picked from the store (nothing about the data is hard-coded)."""
    everywhere = [j for j in ref.measured_everywhere()
                  if ref.symbols[j] and not ref.symbols[j].upper().startswith("GENE")]
    assert len(everywhere) >= 3, "synth should give named marker genes measured in both datasets"
    d1, d2 = ref.datasets
    only1, only2 = ref.only_in(d1), ref.only_in(d2)
    assert only1 and only2, "the two synth datasets should each measure genes the other lacks"
    comma_types = [v for v in ref.categories["cell_type"] if "," in v]
    return {
        "sym": [ref.symbols[j] for j in everywhere[:3]],
        "only1": ref.gene_ids[only1[0]],
        "only2_symbol": ref.symbols[only2[0]] or ref.gene_ids[only2[0]],
        "only2": ref.gene_ids[only2[0]],
        "d1": d1,
        "d2": d2,
        "sex": ref.categories["sex"],
        "disease": ref.categories["disease"],
        "donor": ref.categories["donor"],
        "tissue": ref.categories["tissue"],
        "cell_type": ref.categories["cell_type"],
        "comma_type": comma_types[0] if comma_types else ref.categories["cell_type"][0],
    }


def query_specs(n):
    """(id, genes, by, where, datasets, metrics); values come from the store."""
    s = n["sym"]
    return [
        ("no-split-default-metrics", [s[0].lower(), n["only1"], n["only2_symbol"].upper()], [], None, None, None),
        ("by-cell-type-where-sex", [s[0], s[1]], ["cell_type"], {"sex": [n["sex"][0]]}, None, ALL_METRICS),
        ("by-two-or-within-and-across", [s[0], n["only2"], s[2]], ["tissue", "sex"],
         {"disease": n["disease"][:2], "donor": n["donor"][::2]}, None, ALL_METRICS),
        ("where-na-by-dataset", [s[0], n["only1"]], ["dataset"], {"tissue": ["NA"]}, None, ALL_METRICS),
        ("datasets-param-by-na-column", [s[1], n["only1"], n["only2"]], ["cancer_stage"], None, [n["d2"]],
         ["mean", "n_cells", "var"]),
        ("where-value-with-comma", [s[2]], ["cell_type"], {"cell_type": [n["comma_type"], n["cell_type"][0]]},
         None, ["nnz", "mean_expr", "std", "n_cells"]),
        ("by-four-where-dataset-and-datasets", [s[0]], ["dataset", "sex", "disease", "cell_type"],
         {"dataset": [n["d1"]]}, [n["d1"], n["d2"]], ALL_METRICS),
        ("empty-selection", [s[0]], ["cell_type"], {"tissue": [n["tissue"][0]]}, [n["d2"]], ALL_METRICS),
    ]


SPEC_IDS = ["no-split-default-metrics", "by-cell-type-where-sex", "by-two-or-within-and-across",
            "where-na-by-dataset", "datasets-param-by-na-column", "where-value-with-comma",
            "by-four-where-dataset-and-datasets", "empty-selection"]


# --------------------------------------------------------------------------
# 1. /api/v1/query answers
# --------------------------------------------------------------------------


@pytest.mark.parametrize("spec_id", SPEC_IDS)
def test_query_matches_layers_cli_csv_and_compact(server, cc, store, ref, names, spec_id):
    spec = {s[0]: s for s in query_specs(names)}[spec_id]
    _, genes, by, where, datasets, metrics = spec
    params = query_params(genes, by, where, datasets, metrics)
    want_metrics = metrics or DEFAULT_METRICS

    # JSON objects layout
    t0 = time.monotonic()
    r = get(server.port, "/api/v1/query", params)
    elapsed_us = (time.monotonic() - t0) * 1e6
    assert r.status == 200, r
    assert r.headers.get("content-type", "").startswith("application/json"), r
    doc = r.json()
    assert set(doc) >= {"columns", "rows", "genes", "took_us"}, sorted(doc)
    assert doc["columns"] == list(by) + ["gene"] + want_metrics
    # The first request of these parameters is computed while the client waits: its
    # engine time fits within the wall time (a unit slip to ns, or a negative, does not).
    assert isinstance(doc["took_us"], int) and 0 <= doc["took_us"] <= elapsed_us, (doc["took_us"], elapsed_us)
    rows = doc["rows"]
    for row in rows:
        assert list(row) == doc["columns"], f"row keys {list(row)} != columns {doc['columns']}"
        assert row["n_cells"] > 0 if "n_cells" in row else True

    # 1a. against the store's layers (anndata + pandas)
    want = ref.expected_query(genes, by, where, datasets, metrics)
    problems = compare_to_reference(rows, want, by, metrics)
    assert not problems, f"{spec_id}: API rows disagree with sums of the store's layers:\n  " + "\n  ".join(
        problems[:20])
    if spec_id == "empty-selection":
        assert rows == [] and want == {}

    # 1b. against the CLI's CSV parsed with pandas (same rows, same order, same values)
    proc = run_ok([cc, "query", store, *cli_args(genes, by, where, datasets, metrics), "--format", "csv"])
    cli_rows = parse_csv_rows(proc.stdout, by, metrics)
    assert rows == cli_rows, (f"{spec_id}: API rows differ from `cellcube query --format csv`; first difference "
                              f"at {next((i for i, (a, b) in enumerate(zip(rows, cli_rows)) if a != b), None)} "
                              f"({len(rows)} vs {len(cli_rows)} rows)")

    # 1c. format=csv is the CLI's CSV byte for byte
    rc = get(server.port, "/api/v1/query", params + [("format", "csv")])
    assert rc.status == 200, rc
    assert rc.headers.get("content-type", "").startswith("text/csv"), rc
    assert rc.body == proc.stdout.encode("utf-8"), (
        f"{spec_id}: format=csv differs from the CLI's CSV\nAPI: {rc.body[:400]!r}\nCLI: {proc.stdout[:400]!r}")

    # 1d. layout=compact expands to the same rows (its floats are float32's shortest digits)
    rp = get(server.port, "/api/v1/query", params + [("layout", "compact")])
    assert rp.status == 200, rp
    cd = rp.json()
    assert cd["columns"] == doc["columns"] and cd["genes"] == doc["genes"]
    assert isinstance(cd["splits"], list) and all(isinstance(s, list) and len(s) == len(by) for s in cd["splits"])
    assert len(cd["rows"]) == len(rows)
    for i, (arr, obj) in enumerate(zip(cd["rows"], rows)):
        assert len(arr) == 2 + len(want_metrics), arr
        exp = dict(zip(by, cd["splits"][arr[0]]))
        exp["gene"] = cd["genes"][arr[1]]["id"]
        for c in list(by) + ["gene"]:
            assert exp[c] == obj[c], f"compact row {i}: {c} {exp[c]!r} != {obj[c]!r}"
        for m, v in zip(want_metrics, arr[2:]):
            o = obj[m]
            if o is None or v is None:
                assert o is None and v is None, f"compact row {i} {m}: {v!r} vs {o!r}"
            elif m in INT_METRICS:
                assert v == o and isinstance(v, int), f"compact row {i} {m}: {v!r} vs {o!r}"
            else:
                assert np.float32(v) == np.float32(o), f"compact row {i} {m}: {v!r} vs float32({o!r})"


def test_query_genes_entries(server, ref, names):
    """genes: one entry per matched id, in query order, with not_measured_in among the
    selected datasets (from the store's measured genes)."""
    genes = [names["only2_symbol"].lower(), names["sym"][0].upper(), names["only1"]]
    for datasets in (None, [names["d1"]], [names["d2"]]):
        r = get(server.port, "/api/v1/query", query_params(genes, datasets=datasets))
        assert r.status == 200, r
        entries = r.json()["genes"]
        ids = []
        for t in genes:
            ids += [j for j in ref.resolve(t) if j not in ids]
        assert [e["id"] for e in entries] == [ref.gene_ids[j] for j in ids]
        for e, j in zip(entries, ids):
            assert e["symbol"] == ref.symbols[j]
            sel = datasets or ref.datasets
            want = [d for d in ref.datasets if d in sel and j not in ref.measured[d]]
            assert e["not_measured_in"] == want, (e, datasets)


def test_query_genes_entries_name_the_gene_asked(server, names):
    """API.md: one genes entry per matched gene id, with its symbol, whatever case it was asked in."""
    asked = names["sym"][0].lower()
    r = get(server.port, "/api/v1/query", [("genes", asked)])
    assert r.status == 200, r
    entry = r.json()["genes"][0]
    assert entry["symbol"].lower() == asked, entry
    assert set(entry) == {"id", "symbol", "not_measured_in"}, entry


def test_query_where_or_within_and_across(server, ref, names):
    """Repeats of one column are OR-ed, columns AND-ed (checked with n_cells alone)."""
    g = names["sym"][0]
    d0, d1 = names["disease"][:2]
    s0 = names["sex"][0]

    def total(where):
        r = get(server.port, "/api/v1/query", query_params([g], where=where, metrics=["n_cells"]))
        assert r.status == 200, r
        rows = r.json()["rows"]
        return rows[0]["n_cells"] if rows else 0

    a, b = total({"disease": [d0]}), total({"disease": [d1]})
    assert a > 0 and b > 0
    assert total({"disease": [d0, d1]}) == a + b
    both = total({"disease": [d0, d1], "sex": [s0]})
    lab = ref.labels
    want = int(ref.n_cells[np.isin(lab["disease"], [d0, d1]) & (lab["sex"] == s0)].sum())
    assert both == want and 0 < both < a + b


def test_query_metrics_param(server, names):
    g = names["sym"][0]
    for metrics in (["std"], ["mean", "n_cells"], ALL_METRICS[::-1]):
        r = get(server.port, "/api/v1/query", query_params([g], by=["sex"], metrics=metrics))
        assert r.status == 200, r
        doc = r.json()
        assert doc["columns"] == ["sex", "gene"] + metrics
        assert all(list(row) == doc["columns"] for row in doc["rows"])
    r = get(server.port, "/api/v1/query", query_params([g]))
    assert r.json()["columns"] == ["gene"] + DEFAULT_METRICS


# --------------------------------------------------------------------------
# 2. query errors
# --------------------------------------------------------------------------


def test_query_unknown_gene_suggests(server, ref, names):
    sym = names["sym"][0]
    symbols = {s.lower() for s in ref.symbols} | {g.lower() for g in ref.gene_ids}
    bad = next(sym[:-1] + c for c in "XQZJW" if (sym[:-1] + c).lower() not in symbols)
    r = get(server.port, "/api/v1/query", [("genes", f"{names['sym'][1]},{bad}")])
    msg = assert_api_error(r, 400, mentions=["unknown gene", bad, "did you mean"])
    suggested = [p for p in msg.split("did you mean", 1)[1].split("'")[1::2]]
    assert suggested, msg
    assert sym in suggested, f"{msg!r} should suggest {sym!r}"
    assert all(s.lower() in symbols for s in suggested), f"suggestions must be genes of the store: {msg!r}"


def test_query_errors(server, ref, names):
    g = names["sym"][0]
    col = "sex"
    cases = [
        # (params, mentions)
        ([("genes", g), ("by", "no_such_column")], ["no_such_column"]),
        ([("genes", g), ("where", "no_such_column:x")], ["no_such_column"]),
        ([("genes", g), ("where", f"{col}:no such value")], ["no such value"]),
        ([("genes", g), ("datasets", "no_such_dataset")], ["no_such_dataset"]),
        ([("genes", g), ("metrics", "n_cells,mediun")], ["mediun"]),
        ([("genes", "")], ["genes"]),
        ([("by", "sex")], ["genes"]),
        ([("genes", g), ("where", "sex")], ["where"]),
        ([("genes", g), ("where", ":female")], ["where"]),
        ([("genes", g), ("bogus", "1")], ["bogus"]),
        ([("genes", g), ("format", "xml")], ["format"]),
        ([("genes", g), ("layout", "columns")], ["layout"]),
    ]
    for params, mentions in cases:
        r = get(server.port, "/api/v1/query", params)
        assert_api_error(r, 400, mentions=mentions)
    r = get(server.port, "/api/v1/query", [("genes", g), ("by", "sex"), ("format", "csv"), ("where", "sex:nope")])
    assert_api_error(r, 400, mentions=["nope"])  # errors are JSON even when CSV is asked


def test_query_limits(server, ref, names):
    ids = ref.gene_ids
    assert len(ids) >= 201
    ok = get(server.port, "/api/v1/query", [("genes", ",".join(ids[:200]))])
    assert ok.status == 200, ok
    assert len(ok.json()["genes"]) == 200
    assert_api_error(get(server.port, "/api/v1/query", [("genes", ",".join(ids[:201]))]), 400,
                     mentions=["200"])
    cols = ref.columns
    assert len(cols) >= 5
    assert get(server.port, "/api/v1/query", [("genes", ids[0]), ("by", ",".join(cols[:4]))]).status == 200
    assert_api_error(get(server.port, "/api/v1/query", [("genes", ids[0]), ("by", ",".join(cols[:5]))]), 400,
                     mentions=["4"])
    vals = names["donor"]
    where50 = [("where", f"donor:{vals[i % len(vals)]}") for i in range(50)]
    assert get(server.port, "/api/v1/query", [("genes", ids[0])] + where50).status == 200
    assert_api_error(get(server.port, "/api/v1/query", [("genes", ids[0])] + where50 + [("where", "sex:x")]),
                     400, mentions=["50"])


@pytest.mark.parametrize("query", [
    b"genes=%FF",
    b"genes=CD3E&where=sex:%C3%28",
    b"genes=CD3E&by=%FF",
    b"genes=CD3E&%FF=1",
    b"genes=\xff\xfe",
])
def test_query_invalid_utf8(server, query):
    status, hdrs, body, _ = raw_request(
        server.port, b"GET /api/v1/query?" + query + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status == 400, (status, body[:300])
    doc = json.loads(body.decode("utf-8", errors="strict"))
    assert list(doc) == ["error"] and "utf-8" in doc["error"].lower(), doc


@pytest.mark.parametrize("path", ["/api/v1/genes?q=%FF", "/api/v1/counts?where=sex:%FF",
                                  "/api/v1/query?genes=%C0%80", "/%FF", "/api/v1/%FF"])
def test_invalid_utf8_answers_are_utf8_json(server, path):
    """Whatever the status, an answer to bad bytes is strict UTF-8 JSON with an error."""
    status, hdrs, body, _ = raw_request(
        server.port, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    assert status in (400, 404), (status, body[:300])
    doc = json.loads(body.decode("utf-8", errors="strict"))
    assert list(doc) == ["error"], doc


# --------------------------------------------------------------------------
# 3. /meta, /counts, /genes, /healthz
# --------------------------------------------------------------------------


def test_meta(server, ref, store):
    r = get(server.port, "/api/v1/meta")
    assert r.status == 200, r
    m = r.json()
    total = int(ref.n_cells.sum())
    assert m["store"] == store.name
    assert m["n_cells"] == total
    assert m["n_genes"] == len(ref.gene_ids)
    assert m["n_groups"] == ref.n_groups
    assert [d["name"] for d in m["datasets"]] == ref.datasets
    for d in m["datasets"]:
        rows = ref.labels["dataset"] == d["name"]
        assert d["n_cells"] == int(ref.n_cells[rows].sum()), d
        assert d["n_genes"] == len(ref.measured[d["name"]]), d
        assert d["transform"] == ref.records.loc[d["name"], "transform"], d
        if "n_groups" in d:
            assert d["n_groups"] == int(rows.sum()), d
    assert [c["name"] for c in m["columns"]] == ref.columns
    assert ref.columns[:2] == ["dataset", "cell_type"]
    for c in m["columns"]:
        name = c["name"]
        got = {v["value"]: v["n_cells"] for v in c["values"]}
        assert len(got) == len(c["values"]), f"{name}: repeated values"
        assert sum(got.values()) == total, f"{name}: value counts sum to {sum(got.values())}, not {total}"
        want = pd.Series(ref.n_cells).groupby(ref.labels[name]).sum()
        want = {str(k): int(v) for k, v in want.items() if v > 0}
        assert {k: v for k, v in got.items() if v > 0} == want, name
        assert set(got) <= set(ref.categories[name]) | {"NA"}, name
    assert any(v["value"] == "NA" for c in m["columns"] for v in c["values"]), "the store has missing values"
    assert m["metrics"] == META_METRICS
    assert m["histograms"] == {"bins": 64, "max": math.log(10001)}
    donor = next((c for c in DONOR_NAMES if c in ref.columns), None)
    assert m["donor_column"] == donor
    assert m["has_donor"] is (donor is not None)


def _counts_cases(names):
    n = names
    return [
        ({}, None),
        ({"sex": [n["sex"][0]]}, None),
        ({"sex": [n["sex"][0]], "disease": n["disease"][:2]}, [n["d1"]]),
        ({"tissue": ["NA"], "donor": n["donor"][1::3]}, None),
        ({"dataset": [n["d2"]], "cell_type": [n["comma_type"]]}, [n["d1"], n["d2"]]),
        ({"dataset": [n["d1"]]}, [n["d2"]]),  # nothing passes both dataset filters
    ]


def test_counts_faceted(server, ref, names):
    for where, datasets in _counts_cases(names):
        params = query_params(["x"], where=where, datasets=datasets)[1:]
        r = get(server.port, "/api/v1/counts", params)
        assert r.status == 200, (params, r)
        doc = r.json()
        want, want_total = ref.expected_counts(where, datasets)
        assert doc["n_cells"] == want_total, (params, doc["n_cells"], want_total)
        assert [c["name"] for c in doc["columns"]] == ref.columns
        for c in doc["columns"]:
            got = {v["value"]: v["n_cells"] for v in c["values"]}
            assert set(got) <= set(ref.categories[c["name"]]) | {"NA"}, c["name"]
            assert {k: v for k, v in got.items() if v > 0} == want[c["name"]], (
                f"counts of {c['name']} with where={where} datasets={datasets}: got {got}, "
                f"want {want[c['name']]}")
    # with no filter the counts are meta's
    meta = get(server.port, "/api/v1/meta").json()
    counts = get(server.port, "/api/v1/counts").json()
    for mc, cc_ in zip(meta["columns"], counts["columns"]):
        assert {v["value"]: v["n_cells"] for v in mc["values"]} == {
            v["value"]: v["n_cells"] for v in cc_["values"] if v["n_cells"] > 0}
    assert counts["n_cells"] == meta["n_cells"]


def test_counts_errors(server, names):
    cases = [
        ([("where", "no_such_column:x")], ["no_such_column"]),
        ([("where", "sex:no such value")], ["no such value"]),
        ([("datasets", "no_such_dataset")], ["no_such_dataset"]),
        ([("where", "sex")], ["where"]),
        ([("genes", names["sym"][0])], ["genes"]),
        ([("where", f"sex:{names['sex'][0]}")] * 51, ["50"]),
    ]
    for params, mentions in cases:
        assert_api_error(get(server.port, "/api/v1/counts", params), 400, mentions=mentions)


def expected_gene_search(ref, q, limit):
    p = q.lower()
    sym = sorted((s.lower(), j) for j, s in enumerate(ref.symbols) if s and s.lower().startswith(p))
    ids = sorted((g.lower(), j) for j, g in enumerate(ref.gene_ids) if g.lower().startswith(p))
    out = []
    for _, j in sym + ids:
        if j not in out:
            out.append(j)
    return out[:limit]


def test_genes_search(server, ref, names):
    sym = names["sym"][0]
    an_id = ref.gene_ids[len(ref.gene_ids) // 2]
    cases = [(sym[:2].lower(), None), (sym[:2].upper(), 5), (sym, 1), ("gene00", None), ("GENE00", 100),
             (an_id[:8].lower(), 100), (an_id, None), ("e", 100), ("", 7), ("zzzz-nothing", None)]
    for q, limit in cases:
        params = [("q", q)] + ([("limit", str(limit))] if limit is not None else [])
        r = get(server.port, "/api/v1/genes", params)
        assert r.status == 200, (params, r)
        got = r.json()["genes"]
        want = expected_gene_search(ref, q, limit or 20)
        assert [(g["id"], g["symbol"]) for g in got] == [(ref.gene_ids[j], ref.symbols[j]) for j in want], (
            f"q={q!r} limit={limit}: got {[g['symbol'] or g['id'] for g in got][:12]}, want "
            f"{[ref.symbols[j] or ref.gene_ids[j] for j in want][:12]}")
        if q == "e":  # symbols first, then ids
            kinds = [not (ref.symbols[j] or "").lower().startswith("e") for j in want]
            assert kinds == sorted(kinds) and any(kinds) and not all(kinds)
    assert len(get(server.port, "/api/v1/genes", [("q", "gene")]).json()["genes"]) == 20  # default limit


def test_genes_errors(server):
    for limit in ("0", "101", "-1", "abc", "", "5x", "1.5"):
        assert_api_error(get(server.port, "/api/v1/genes", [("q", "a"), ("limit", limit)]), 400,
                         mentions=["limit"])
    assert_api_error(get(server.port, "/api/v1/genes", [("q", "a"), ("prefix", "b")]), 400, mentions=["prefix"])


def test_healthz(server, store):
    r = get(server.port, "/healthz")
    assert r.status == 200 and r.headers["content-type"].startswith("application/json"), r
    doc = r.json()
    assert doc["status"] == "ok"
    assert doc["generation"] == 1
    assert os.path.basename(doc["store"]) == store.name, doc


def test_unknown_endpoints_404(server):
    for path in ("/api/v1/nope", "/api/v2/query", "/api/v1/query/x", "/nope", "/healthz/x", "/index.htm"):
        assert_api_error(get(server.port, path), 404)


# --------------------------------------------------------------------------
# 4. static files
# --------------------------------------------------------------------------


def test_static_index_and_assets(server):
    r = get(server.port, "/")
    assert r.status == 200 and r.headers["content-type"].startswith("text/html"), r
    html = r.body.decode("utf-8")
    assert "<html" in html.lower()
    assert "/assets/app.js" in html
    a = get(server.port, "/assets/app.js")
    assert a.status == 200, a
    assert "javascript" in a.headers.get("content-type", ""), a.headers
    assert len(a.body) > 0
    etag = a.headers.get("etag")
    assert etag, f"/assets/app.js has no ETag: {a.headers}"
    n = get(server.port, "/assets/app.js", headers={"If-None-Match": etag})
    assert n.status == 304 and n.body == b"", n
    assert n.headers.get("etag") == etag
    other = get(server.port, "/assets/app.js", headers={"If-None-Match": '"not-it"'})
    assert other.status == 200 and other.body == a.body
    i = get(server.port, "/")
    assert i.headers.get("etag") and get(server.port, "/", headers={"If-None-Match": i.headers["etag"]}).status == 304


def test_gzip_when_asked_compressed_once_with_its_own_etag(server, names):
    """docs/API.md: answers and assets go out gzip-compressed when Accept-Encoding allows it,
    with Vary: Accept-Encoding and an ETag per encoding; the compressed bytes inflate to
    exactly the plain ones; q=0 refuses gzip; errors stay plain."""
    import gzip as gz

    gzip_ok = {"Accept-Encoding": "gzip, deflate"}
    cases = [("/api/v1/query", [("genes", ",".join(names["sym"][:5])), ("by", "cell_type")]),
             ("/api/v1/query", [("genes", names["sym"][0]), ("by", "cell_type"), ("format", "csv")]),
             ("/api/v1/meta", []), ("/assets/app.js", []), ("/", [])]
    for path, params in cases:
        plain = get(server.port, path, params, headers={"Accept-Encoding": "identity"})
        packed = get(server.port, path, params, headers=gzip_ok)
        again = get(server.port, path, params, headers=gzip_ok)  # from the cache
        assert plain.status == packed.status == 200, (path, plain, packed)
        assert "content-encoding" not in plain.headers, (path, plain.headers)
        assert packed.headers.get("content-encoding") == "gzip", (path, packed.headers)
        for r in (plain, packed):
            assert r.headers.get("vary") == "Accept-Encoding", (path, r.headers)
        assert gz.decompress(packed.body) == plain.body, path
        assert again.body == packed.body and again.headers["etag"] == packed.headers["etag"]
        assert len(packed.body) < len(plain.body), (path, len(packed.body), len(plain.body))
        tag, gz_tag = plain.headers["etag"], packed.headers["etag"]
        assert tag != gz_tag, path
        # A tag names one encoding: it revalidates that one only.
        assert get(server.port, path, params, headers={**gzip_ok, "If-None-Match": gz_tag}).status == 304
        assert get(server.port, path, params, headers={"If-None-Match": tag}).status == 304
        cross = get(server.port, path, params, headers={**gzip_ok, "If-None-Match": tag})
        assert cross.status == 200 and cross.body == packed.body, path
        cross = get(server.port, path, params, headers={"Accept-Encoding": "identity", "If-None-Match": gz_tag})
        assert cross.status == 200 and cross.body == plain.body, path
    q = [("genes", names["sym"][0]), ("by", "cell_type")]
    for header, packed in (("gzip;q=0", False), ("gzip; q=0.000", False), ("*", True),
                           ("gzip;q=0, *", False), ("br;q=1, GZIP;q=0.5", True), ("deflate", False)):
        r = get(server.port, "/api/v1/query", q, headers={"Accept-Encoding": header})
        assert r.status == 200 and (r.headers.get("content-encoding") == "gzip") == packed, (header, r.headers)
    bad = get(server.port, "/api/v1/query", [("genes", "NO_SUCH_GENE_X")], headers=gzip_ok)
    assert bad.status == 400 and "content-encoding" not in bad.headers
    assert "error" in json.loads(bad.body)


def test_an_empty_answer_says_why(cc, store, server, names):
    """An empty answer tells "the selection holds no cells" apart from "no selected
    dataset measured these genes": on stderr from the CLI (stdout: "no rows"), in the
    API's JSON notes; a non-empty answer has no notes. CSV carries none."""
    cases = [
        ("not measured", [("genes", names["only1"]), ("datasets", names["d2"])],
         "none of the selected datasets measured these genes"),
        ("no cells", [("genes", names["sym"][0]), ("datasets", names["d1"]), ("where", f"dataset:{names['d2']}")],
         "the selection holds no cells"),
    ]
    for what, params, why in cases:
        doc = get(server.port, "/api/v1/query", params).json()
        assert doc["rows"] == [] and len(doc["notes"]) == 1 and why in doc["notes"][0], (what, doc)
        csv = get(server.port, "/api/v1/query", params + [("format", "csv")])
        assert csv.status == 200 and csv.body.decode().count("\n") == 1, (what, csv.body)  # header only
        cli = ["--genes", params[0][1], "--datasets", params[1][1]]
        if len(params) > 2:
            col, _, value = params[2][1].partition(":")
            cli += ["--where", f"{col}={value}"]
        for fmt in ("table", "csv", "json"):
            proc = run_ok([cc, "query", store, *cli, "--format", fmt])
            assert why in proc.stderr and proc.stderr.count("\n") == 1, (what, fmt, proc.stderr)
            assert why not in proc.stdout
        assert run_ok([cc, "query", store, *cli]).stdout == "no rows\n"
    other = [w for _, _, w in cases]
    full = get(server.port, "/api/v1/query", [("genes", names["only1"]), ("datasets", names["d1"])]).json()
    assert full["rows"] and full["notes"] == [], full["notes"]
    proc = run_ok([cc, "query", store, "--genes", names["only1"], "--datasets", names["d1"]])
    assert proc.stderr == "" and all(w not in proc.stdout for w in other)


def test_where_in_url_form_on_the_command_line_gets_a_hint(cc, store):
    for cmd in (["query", store, "--genes", "x"], ["de", store, "--compare", "cell_type", "--group1", "x"],
                ["markers", store]):
        proc = helpers.run([cc, *cmd, "--where", "tissue:blood"])
        line = helpers.assert_error(proc, code=2, mentions=["tissue:blood", "tissue=blood", "COL=VALUE"])
        assert "URL" in line, line


@pytest.mark.parametrize("column", ["patient", "subject", "donor_id"])
def test_meta_finds_every_donor_column_name_of_spec_9(cc, work, column):
    """The page's per-donor error bars and `de` find the donor column by docs/DE.md's names,
    patient and subject included: one rule (DefaultDonorColumn) for both."""
    import anndata

    rng = np.random.default_rng(5)
    n = 90
    x = sp.csr_matrix(rng.poisson(1.0, size=(n, 12)).astype(np.float32))
    obs = pd.DataFrame({"cell_type": pd.Categorical(rng.choice(["T", "B"], n)),
                        column: pd.Categorical(rng.choice(["p1", "p2", "p3"], n))},
                       index=[f"c{i}" for i in range(n)])
    d = work / f"donor-{column}"
    d.mkdir()
    anndata.AnnData(X=x, obs=obs, var=pd.DataFrame(index=[f"G{i}" for i in range(12)])).write_h5ad(d / "in.h5ad")
    store = d / "store.h5ad"
    run_ok([cc, "build", "-o", store, "--quiet", "--groupby", column, d / "in.h5ad"])
    srv = Server(cc, store, d)
    try:
        meta = get(srv.port, "/api/v1/meta").json()
        assert meta["donor_column"] == column and meta["has_donor"] is True, meta
    finally:
        srv.stop()
    de = run_ok([cc, "de", store, "--compare", "cell_type", "--group1", "T", "--min-cells", "2", "--format", "json"])
    assert json.loads(de.stdout)["test"].startswith("donors"), de.stdout[:300]


TRAVERSALS = [
    b"/../etc/passwd",
    b"/../../../../../../etc/passwd",
    b"/%2e%2e/%2e%2e/etc/passwd",
    b"/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    b"/assets/../../README.md",
    b"/assets/%2e%2e/%2e%2e/README.md",
    b"/assets/..%2f..%2fREADME.md",
    b"/assets/..%5c..%5cREADME.md",
    b"/etc/passwd",
    b"//etc/passwd",
    b"/README.md",
    b"/docs/API.md",
    b"/web/dist/index.html",
    b"/assets/",
    b"/assets",
    b"http://127.0.0.1/etc/passwd",
    b"/" + str(helpers.REPO / "README.md").encode(),
]


@pytest.mark.parametrize("path", TRAVERSALS, ids=[p.decode() for p in TRAVERSALS])
def test_no_file_outside_assets(server, path):
    readme = (helpers.REPO / "README.md").read_bytes()[:200]
    status, hdrs, body, _ = raw_request(server.port, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status == 404, (path, status, body[:200])
    assert b"root:" not in body and readme not in body, (path, body[:300])
    assert json.loads(body.decode("utf-8")).keys() == {"error"}


def test_nul_byte_does_not_truncate(server, names):
    """%00 is part of the path or value: /assets/app.js%00.txt is not app.js, and
    genes=GENE%00junk is not GENE (an unknown gene)."""
    status, _, body, _ = raw_request(
        server.port, b"GET /assets/app.js%00.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status == 404, f"GET /assets/app.js%00.txt: expected 404, got {status} {body[:80]!r}"
    g = names["sym"][0]
    r = get(server.port, "/api/v1/query", [("genes", g + "\x00junk")])
    assert r.status == 400, f"genes={g}%00junk: expected 400 (no such gene), got {r!r}"


# --------------------------------------------------------------------------
# 5. limits, methods, keep-alive
# --------------------------------------------------------------------------


def test_header_limit(server):
    ok = get(server.port, "/healthz", headers={"X-Pad": "a" * 64 * 1024})
    assert ok.status == 200, f"64 KiB of headers is within the 384 KiB limit: {ok!r}"
    for size in (513 * 1024, 2048 * 1024):
        status, _, body, _ = raw_request(
            server.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * size + b"\r\n\r\n")
        assert status is not None and 400 <= status < 500, (size, status, body[:200])
        assert get(server.port, "/healthz").status == 200


def test_query_string_limit_is_414(server, ref):
    """API.md: query string at most 8 KiB (414 beyond)."""
    genes = ",".join(ref.gene_ids[:100])
    pad = ",".join(ref.gene_ids[i % 100] for i in range(600))  # > 8 KiB of valid parameters
    assert len(pad) > 8 * 1024
    r = get(server.port, "/api/v1/query", [("genes", genes)])
    assert r.status == 200, r
    r = get(server.port, "/api/v1/query", [("genes", pad)])
    assert r.status == 414, f"a {len(pad)}-byte query string: expected 414 (docs/API.md Limits), got {r!r}"
    assert get(server.port, "/healthz").status == 200
    # A request far over the limit, 3,000 where values (about 70 KB), still gets JSON.
    many = [("genes", ref.gene_ids[0])] + [("where", f"cell_type:v{i}") for i in range(3000)]
    r = get(server.port, "/api/v1/query", many)
    assert r.status == 414 and r.headers["content-type"].startswith("application/json"), r
    assert "query string too long" in json.loads(r.body)["error"]


def test_request_with_body_is_413(server):
    status, hdrs, body, _ = raw_request(
        server.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789")
    assert status == 413, (status, body[:200])
    assert "error" in json.loads(body)
    status, _, body, _ = raw_request(
        server.port, b"GET /api/v1/meta HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
    assert status == 413, (status, body[:200])
    assert get(server.port, "/healthz").status == 200


def test_methods(server):
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        r = request(server.port, "/api/v1/query?genes=x", method=method)
        assert r.status == 405, (method, r)
        allow = {m.strip() for m in r.headers.get("allow", "").split(",")}
        assert {"GET", "HEAD"} <= allow, (method, r.headers)
        assert "error" in r.json()
    for path in ("/healthz", "/api/v1/meta", "/", "/assets/app.js"):
        g = get(server.port, path)
        h = request(server.port, path, method="HEAD")
        assert h.status == 200 and h.body == b"", (path, h)
        assert h.headers.get("content-type") == g.headers.get("content-type"), path
        assert int(h.headers.get("content-length", len(g.body))) == len(g.body), path


def test_keep_alive_many_requests_one_connection(server, names):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        local = None
        paths = ["/healthz", "/api/v1/meta", target("/api/v1/query", [("genes", names["sym"][0]), ("by", "sex")]),
                 "/api/v1/counts", "/api/v1/genes?q=a", "/api/v1/query?genes=nope_gene", "/nope", "/"]
        for i in range(240):
            p = paths[i % len(paths)]
            conn.request("GET", p)
            r = conn.getresponse()
            r.read()
            want = 400 if "nope_gene" in p else 404 if p == "/nope" else 200
            assert r.status == want, (i, p, r.status)
            assert not r.will_close, f"request {i} ({p}) closed the connection"
            port = conn.sock.getsockname()[1]
            local = local or port
            assert port == local, f"request {i} ({p}) went over a new connection"
    finally:
        conn.close()


# --------------------------------------------------------------------------
# 6. hot reload
# --------------------------------------------------------------------------


class Querier(threading.Thread):
    """Keeps querying over one keep-alive connection; records every failure."""

    def __init__(self, port, gene):
        super().__init__(daemon=True)
        self.port, self.gene = port, gene
        self.stop = threading.Event()
        self.failures = []
        self.n = 0
        self.connections = 0
        self.datasets_seen = set()

    def run(self):
        paths = [target("/api/v1/query", [("genes", self.gene), ("by", "dataset")]), "/api/v1/meta", "/healthz",
                 "/api/v1/counts", target("/api/v1/query", [("genes", self.gene), ("format", "csv")])]
        conn = None
        while not self.stop.is_set():
            p = paths[self.n % len(paths)]
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                    self.connections += 1
                conn.request("GET", p)
                r = conn.getresponse()
                body = r.read()
                if r.status != 200:
                    self.failures.append((p, r.status, body[:200]))
                elif "csv" not in p:
                    doc = json.loads(body)
                    if p.startswith("/api/v1/query"):
                        if not doc["rows"]:
                            self.failures.append((p, "no rows", body[:200]))
                        self.datasets_seen |= {row["dataset"] for row in doc["rows"]}
                if r.will_close:
                    conn.close()
                    conn = None
            except Exception as e:  # noqa: BLE001 - every failure counts
                self.failures.append((p, type(e).__name__, str(e)))
                if conn is not None:
                    conn.close()
                conn = None
            self.n += 1
        if conn is not None:
            conn.close()


def wait_for(pred, timeout, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


def test_hot_reload_under_load(cc, store, ref, names, work):
    d = work / "reload"
    d.mkdir()
    live = d / "store.h5ad"
    shutil.copyfile(store, live)
    syn3 = d / "syn3"
    run_ok([cc, "synth", "-o", syn3, "--datasets", "1", "--cells", "3000", "--genes", "400", "--seed", "6",
            "--quiet"])
    third = d / "third.h5ad"
    os.replace(syn3 / "synth_01.h5ad", third)

    srv = Server(cc, live, d, env=helpers.libhdf5_bug_env())  # step 2b
    q = Querier(srv.port, names["sym"][0])
    try:
        g0 = srv.generation()
        assert g0 == 1
        q.start()
        assert wait_for(lambda: q.n >= 30, 10), "the client made no progress"

        # 1. cellcube add replaces the store (write to a temp file, rename over it)
        run_ok([cc, "add", live, third, "--quiet"])
        t0 = time.monotonic()
        assert wait_for(lambda: srv.generation() > g0, 3.0), (
            f"generation still {g0} 3 s after `cellcube add`\n{srv.output()}")
        took = time.monotonic() - t0
        g1 = srv.generation()
        assert g1 == g0 + 1
        meta = get(srv.port, "/api/v1/meta").json()
        assert [x["name"] for x in meta["datasets"]] == ref.datasets + ["third"], meta["datasets"]
        n_at_reload = q.n
        assert wait_for(lambda: "third" in q.datasets_seen and q.n > n_at_reload + 20, 5), (
            "the client never saw the third dataset")
        after_add = get(srv.port, "/api/v1/query", [("genes", names["sym"][0]), ("by", "dataset")]).json()["rows"]

        # 2. a corrupt file (a truncated copy) renamed over the store: keep serving the old one
        good = d / "good-copy.h5ad"
        shutil.copyfile(live, good)
        data = live.read_bytes()
        tmp = d / "store.h5ad.corrupt-tmp"
        tmp.write_bytes(data[: len(data) // 2])
        n_before = q.n
        os.replace(tmp, live)
        time.sleep(2.0)  # four watcher periods
        assert q.n > n_before + 20, "the client stalled after the corrupt file"
        assert srv.proc.poll() is None, f"server died on a corrupt store\n{srv.output()}"
        assert srv.generation() == g1, "generation advanced on a corrupt file"
        meta2 = get(srv.port, "/api/v1/meta").json()
        assert [x["name"] for x in meta2["datasets"]] == ref.datasets + ["third"]
        rows2 = get(srv.port, "/api/v1/query", [("genes", names["sym"][0]), ("by", "dataset")]).json()["rows"]
        assert rows2 == after_add, "answers changed while the corrupt file was on disk"

        # 2b. a file on which libhdf5 itself crashes (fuzz/libhdf5-findings): the server
        # opens replacements in a child process first, so it survives and keeps serving
        crash = d / "crash-tmp.h5ad"
        shutil.copyfile(helpers.REPO / "fuzz" / "libhdf5-findings" / "H5HG_read-segv.h5ad", crash)
        n_before = q.n
        os.replace(crash, live)
        # (the child's open and crash are slow under ASan on a loaded machine)
        assert wait_for(lambda: "crashed (SIGSEGV" in srv.output(), 15.0), srv.output()
        time.sleep(1.0)  # two more watcher periods on the same file
        assert srv.proc.poll() is None, f"server died on a file that crashes libhdf5\n{srv.output()}"
        assert q.n > n_before + 20, "the client stalled after the crashing file"
        assert srv.generation() == g1, "generation advanced on a crashing file"
        assert srv.output().count("crashed (SIGSEGV") == 1, "the same crashing file was opened twice"

        # 3. a good file renamed back is picked up again
        os.replace(good, live)
        # (10 s: each reload opens the store in a child process first, slow under ASan)
        assert wait_for(lambda: srv.generation() > g1, 10.0), f"good file not reloaded after a corrupt one\n{srv.output()}"
        assert get(srv.port, "/api/v1/meta").json()["n_cells"] == meta["n_cells"]
        time.sleep(0.3)
    finally:
        q.stop.set()
        q.join(10)
        srv.stop()
    assert not q.failures, f"{len(q.failures)} of {q.n} requests failed during reloads, e.g. {q.failures[:5]}"
    assert q.n > 100, q.n
    assert q.connections == 1, f"the keep-alive client had to reconnect {q.connections - 1} times"
    assert took < 3.0


def test_answers_carry_etags_and_repeat_from_the_cache(server, names):
    """An API answer names its content in an ETag (request + store file): If-None-Match
    with it gets 304 and no body; the same request gives the same bytes (from the answer
    cache); another request, another tag; errors carry none."""
    params = [("genes", names["sym"][0]), ("by", "cell_type"), ("metrics", "n_cells,mean,std")]
    a = get(server.port, "/api/v1/query", params)
    b = get(server.port, "/api/v1/query", params)
    assert a.status == b.status == 200, (a, b)
    assert a.body == b.body
    tag = a.headers.get("etag")
    assert tag and tag.startswith('"') and tag == b.headers.get("etag"), a.headers
    assert a.headers.get("cache-control") == "no-cache"
    r = get(server.port, "/api/v1/query", params, headers={"If-None-Match": tag})
    assert r.status == 304 and r.body == b"", r
    other = get(server.port, "/api/v1/query", params[:2])
    assert other.status == 200 and other.headers.get("etag") not in (None, tag)
    r = get(server.port, "/api/v1/query", params[:2], headers={"If-None-Match": tag})
    assert r.status == 200 and r.body == other.body
    for path in ("/api/v1/meta", "/api/v1/counts", "/api/v1/genes"):
        first = get(server.port, path)
        assert first.status == 200 and first.headers.get("etag"), (path, first)
        assert get(server.port, path, headers={"If-None-Match": first.headers["etag"]}).status == 304
    # One cache policy per answer: no-cache with a tag (CSV too), no-store for errors
    # and health.
    def policies(r):
        return [v for k, v in r.header_list if k.lower() == "cache-control"]

    for _ in range(2):
        csv = get(server.port, "/api/v1/query", params + [("format", "csv")])
        assert csv.status == 200 and policies(csv) == ["no-cache"] and csv.headers.get("etag"), csv.header_list
    assert policies(a) == ["no-cache"], a.header_list
    assert policies(get(server.port, "/healthz")) == ["no-store"]
    bad = get(server.port, "/api/v1/query", [("genes", "NO_SUCH_GENE_X")])
    assert bad.status == 400 and "etag" not in bad.headers and policies(bad) == ["no-store"]
    again = get(server.port, "/api/v1/query", [("genes", "NO_SUCH_GENE_X")])
    assert again.status == 400 and again.body == bad.body


def test_cache_off_gives_the_same_answers(cc, store, work, names):
    """--cache-mb 0 computes every answer: the same bytes as the cached server's."""
    params = [("genes", ",".join(names["sym"][:3])), ("by", "cell_type,sex"), ("layout", "compact")]
    srv = Server(cc, store, work, extra_args=["--cache-mb", "0"])
    try:
        plain = [get(srv.port, "/api/v1/query", params) for _ in range(2)]
    finally:
        srv.stop()
    srv = Server(cc, store, work)
    try:
        cached = [get(srv.port, "/api/v1/query", params) for _ in range(2)]
    finally:
        srv.stop()
    assert all(r.status == 200 for r in plain + cached)
    # took_us is the engine's time when the answer was computed: a cached answer repeats it
    assert cached[0].body == cached[1].body
    bodies = [r.json() for r in plain + cached]
    for b in bodies:
        b.pop("took_us")
    assert bodies[0] == bodies[1] == bodies[2] == bodies[3]
    assert plain[0].headers["etag"] == cached[1].headers["etag"]


# --------------------------------------------------------------------------
# 7. SIGTERM
# --------------------------------------------------------------------------


def test_sigterm_exits_zero(cc, store, work):
    srv = Server(cc, store, work)
    try:
        idle = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)  # an idle keep-alive client
        idle.request("GET", "/healthz")
        idle.getresponse().read()
        t0 = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        try:
            rc = srv.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pytest.fail(f"cellcube serve still running 5 s after SIGTERM\n{srv.output()}", pytrace=False)
        assert rc == 0, f"exit code {rc} after SIGTERM\n{srv.output()}"
        assert time.monotonic() - t0 < 5
        idle.close()
    finally:
        srv.stop()


def test_sigterm_request_in_flight_completes(cc, store, ref, work):
    """A large answer is being sent when SIGTERM arrives: it must arrive whole
    (the client reads it after a short pause, as a slow network would)."""
    srv = Server(cc, store, work)
    try:
        params = [("genes", ",".join(ref.gene_ids[:200])), ("by", "cell_type,donor,sex,disease"),
                  ("metrics", ",".join(ALL_METRICS))]
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        s.sendall(f"GET {target('/api/v1/query', params)} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        data = s.recv(65536)  # the answer has started: the request is in flight
        assert data.startswith(b"HTTP/1.1 200"), data[:100]
        t0 = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        while True:
            try:
                b = s.recv(1 << 20)
            except (ConnectionResetError, socket.timeout):
                break
            if not b:
                break
            data += b
            head, _, body = data.partition(b"\r\n\r\n")
            if len(body) >= int(_parse_headers(head).get("content-length", 1 << 62)):
                break
        s.close()
        try:
            rc = srv.proc.wait(timeout=max(0.1, 5 - (time.monotonic() - t0)))
        except subprocess.TimeoutExpired:
            pytest.fail("cellcube serve still running 5 s after SIGTERM", pytrace=False)
        assert rc == 0, f"exit code {rc}\n{srv.output()}"
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(_parse_headers(head)["content-length"])
        assert len(body) == length, (
            f"the response in flight at SIGTERM was cut: {len(body)} of {length} body bytes received")
        assert len(json.loads(body)["rows"]) > 0
    finally:
        srv.stop()


def test_json_stays_valid_for_odd_names_and_huge_values(cc, tmp_path):
    """Every JSON answer parses: a markers column whose name holds '"' and '\\' is an
    escaped key, and a mean beyond float32's range (1e39, JSON has no infinity) is given
    in float64 digits by the compact layout, as the objects layout gives it."""
    import anndata as ad

    odd = 'stage "early\\late"'
    n = 40
    X = np.zeros((n, 2))
    X[:, 0] = np.arange(n) % 5
    X[0, 1] = 1e39  # one cell of its group: m2 stays 0
    obs = pd.DataFrame({"cell_type": pd.Categorical(["huge"] + ["T"] * 19 + ["B"] * 20),
                        odd: pd.Categorical(np.tile(["a", "b"], n // 2))},
                       index=[f"c{i}" for i in range(n)])
    src = tmp_path / "odd.h5ad"
    ad.AnnData(X=X, obs=obs, var=pd.DataFrame(index=["G0", "G1"]), dtype=X.dtype).write_h5ad(src)
    store = tmp_path / "odd_store.h5ad"
    helpers.run_ok([cc, "build", "-o", store, "--quiet", "--transform", "none", "--groupby", odd,
                    src])
    srv = Server(cc, store, tmp_path)
    try:
        params = [("genes", "G0,G1"), ("by", "cell_type"), ("metrics", "n_cells,sum,mean")]
        objects = json.loads(get(srv.port, "/api/v1/query", params).body)
        compact = json.loads(get(srv.port, "/api/v1/query", params + [("layout", "compact")]).body)
        markers = json.loads(get(srv.port, "/api/v1/markers",
                                 [("column", odd), ("test", "cells"), ("max_padj", "1")]).body)
    finally:
        srv.stop()
    huge = next(r for r in objects["rows"] if r["cell_type"] == "huge" and r["gene"] == "G1")
    assert huge["mean"] == 1e39 and huge["sum"] == 1e39
    gene = [g["id"] for g in compact["genes"]]
    split = [s[0] for s in compact["splits"]]
    row = next(r for r in compact["rows"] if split[r[0]] == "huge" and gene[r[1]] == "G1")
    assert row[3:] == [1e39, 1e39]  # sum, mean: not inf
    assert markers["columns"][0] == odd
    assert markers["rows"] and all(odd in r for r in markers["rows"])
    assert {r[odd] for r in markers["rows"]} <= {"a", "b"}
