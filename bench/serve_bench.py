#!/usr/bin/python3
"""Serving benchmark (issue 5): wrk against the dot-plot query on a demo-sized store,
at 1 and 64 connections, beside a Flask + h5py server doing the seed discussion's
lookup (one HDF5 group per leaf) for the same answer, in the same run.

usage: /usr/bin/python3 bench/serve_bench.py [--quick] [--out FILE]
"""
import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

import h5py

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CELLCUBE = os.environ.get("CELLCUBE_BIN", os.path.join(ROOT, "build", "cellcube"))

FLASK_APP = r'''
import sys, h5py, json
from flask import Flask, request, jsonify
app = Flask(__name__)
PATH = sys.argv[1]
@app.route("/dotplot")
def dotplot():
    genes = request.args["genes"].split(",")
    column, value = request.args["where"].split(":", 1)
    dataset = request.args["datasets"]
    rows = []
    with h5py.File(PATH, "r") as f:   # the seed's lookup: one group per leaf
        base = f[column][value][dataset]
        for cell_type in base:
            for g in genes:
                leaf = base[cell_type][g]
                rows.append({"cell_type": cell_type, "gene": g, "frac": float(leaf["frac"][()]),
                             "mean": float(leaf["mean"][()]), "n_cells": int(leaf["n_cells"][()])})
    return jsonify(rows)
if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(sys.argv[2]), threaded=True)
'''


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_http(url, timeout=30):
    end = time.time() + timeout
    while time.time() < end:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except Exception:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def wrk(url, connections, seconds, headers=(), script=None):
    threads = min(2, connections)
    extra = [a for h in headers for a in ("-H", h)] + (["-s", script] if script else [])
    out = subprocess.run(["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s",
                          "--timeout", "30s", "--latency", *extra, url],
                         capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = {}
    for p in ("50%", "90%", "99%"):
        m = re.search(rf"\s{re.escape(p)}\s+([\d.]+)(us|ms|s)", out)
        v, unit = float(m.group(1)), m.group(2)
        lat[p] = v / 1000 if unit == "us" else v * 1000 if unit == "s" else v
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_err = re.search(r"Socket errors: (.*)", out)
    return {"rps": rps, "lat": lat, "non2xx": int(errors.group(1)) if errors else 0,
            "socket_errors": socket_err.group(1) if socket_err else "none"}


# wrk's request generator for distinct queries: every request a new random set of 20 of
# the dataset's measured genes (no two requests of a run alike, so no cache could help).
RANDOM_GENES_LUA = r"""
local genes = {%(genes)s}
local prefix = "%(prefix)s"
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
end
function init(args)
  math.randomseed(1000 + id)
end
function request()
  local pick, used = {}, {}
  while #pick < 20 do
    local g = genes[math.random(#genes)]
    if not used[g] then
      used[g] = true
      pick[#pick + 1] = g
    end
  end
  return wrk.format("GET", prefix .. table.concat(pick, ","))
end
"""


def measured_genes(base, params, want=400):
    """Up to `want` gene ids that the query's dataset measured (as the dot plot needs)."""
    ids = []
    for digit in "0123456789":
        found = json.load(urllib.request.urlopen(f"{base}/api/v1/genes?q=ENSG00000{digit}&limit=100"))["genes"]
        ids += [g["id"] for g in found]
    measured = []
    for i in range(0, len(ids), 200):
        q = {**params, "genes": ",".join(ids[i:i + 200]), "metrics": "n_cells"}
        rows = json.load(urllib.request.urlopen(base + "/api/v1/query?" + urllib.parse.urlencode(q)))["rows"]
        measured += list(dict.fromkeys(r["gene"] for r in rows))
    return measured[:want]


def write_seed_file(path, answer_rows, column, value, dataset):
    """The seed's layout for exactly the leaves the query reads: column/value/dataset/
    cell type/gene, one group per leaf, one dataset per metric."""
    with h5py.File(path, "w") as f:
        for r in answer_rows:
            g = f.require_group(f"{column}/{value}/{dataset}/{r['cell_type']}/{r['gene']}")
            for k in ("frac", "mean", "n_cells"):
                g.create_dataset(k, data=r[k])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out")
    args = ap.parse_args()
    seconds = 3 if args.quick else 10
    tmp = tempfile.mkdtemp(prefix="cellcube-serve-bench-")
    procs = []
    try:
        cells = 5000 if args.quick else 30000
        d = os.path.join(tmp, "h5ad")
        subprocess.run([CELLCUBE, "synth", "-o", d, "--datasets", "4", "--cells", str(cells),
                        "--genes", "3000", "--quiet"], check=True, capture_output=True)
        store = os.path.join(tmp, "atlas.h5ad")
        subprocess.run([CELLCUBE, "build", "-o", store, "--quiet"] +
                       [os.path.join(d, f) for f in sorted(os.listdir(d))], check=True)
        port = free_port()
        procs.append(subprocess.Popen([CELLCUBE, "serve", store, "--port", str(port), "--quiet"]))
        base = f"http://127.0.0.1:{port}"
        wait_http(base + "/healthz")
        meta = json.load(urllib.request.urlopen(base + "/api/v1/meta"))
        dataset = meta["datasets"][0]["name"]
        candidates = [g["id"] for g in json.load(urllib.request.urlopen(
            base + "/api/v1/genes?q=ENSG&limit=100"))["genes"]]
        params = {"genes": ",".join(candidates), "by": "cell_type", "where": "disease:normal",
                  "datasets": dataset}
        # Twenty genes the dataset measured (a dot plot of genes it lacks would be empty).
        rows = json.load(urllib.request.urlopen(
            base + "/api/v1/query?" + urllib.parse.urlencode(params)))["rows"]
        genes = list(dict.fromkeys(r["gene"] for r in rows))[:20]
        params["genes"] = ",".join(genes)
        # As the web page asks: the compact layout (default metrics n_cells, frac, mean,
        # the ones the seed's leaves hold too).
        url = base + "/api/v1/query?" + urllib.parse.urlencode({**params, "layout": "compact"})
        answer = json.load(urllib.request.urlopen(
            base + "/api/v1/query?" + urllib.parse.urlencode(params)))["rows"]
        results = {"cellcube": {c: wrk(url, c, seconds) for c in (1, 64)}}
        # The same answer gzip-compressed (compressed once, then served from the cache).
        gz = ("Accept-Encoding: gzip",)
        results["gzip"] = {c: wrk(url, c, seconds, gz) for c in (1, 64)}
        sizes = {}
        for enc in ("identity", "gzip"):
            req = urllib.request.Request(url, headers={"Accept-Encoding": enc})
            with urllib.request.urlopen(req) as resp:
                sizes[enc] = len(resp.read())
        procs[-1].terminate()
        procs[-1].wait()
        # The same without the answer cache: every request computed (engine + JSON).
        port = free_port()
        procs.append(subprocess.Popen([CELLCUBE, "serve", store, "--port", str(port), "--quiet",
                                       "--cache-mb", "0"]))
        wait_http(f"http://127.0.0.1:{port}/healthz")
        nocache_url = url.replace(base, f"http://127.0.0.1:{port}")
        results["nocache"] = {c: wrk(nocache_url, c, seconds) for c in (1, 64)}
        # Distinct queries, as a portal's varied visitors ask: random 20-gene sets, plain
        # and as a browser asks (gzip).
        pool = measured_genes(f"http://127.0.0.1:{port}", params)
        prefix = "/api/v1/query?" + urllib.parse.urlencode({k: v for k, v in params.items() if k != "genes"}) + \
            "&layout=compact&genes="
        lua = os.path.join(tmp, "random_genes.lua")
        with open(lua, "w") as f:
            f.write(RANDOM_GENES_LUA % {"genes": ",".join(f'"{g}"' for g in pool), "prefix": prefix})
        home = f"http://127.0.0.1:{port}/"
        results["distinct"] = {c: wrk(home, c, seconds, script=lua) for c in (1, 64)}
        results["distinct-gzip"] = {c: wrk(home, c, seconds, gz, script=lua) for c in (1, 64)}
        procs[-1].terminate()
        procs[-1].wait()

        seed = os.path.join(tmp, "seed.h5")
        write_seed_file(seed, answer, "disease", "normal", dataset)
        app = os.path.join(tmp, "seed_app.py")
        open(app, "w").write(FLASK_APP)
        fport = free_port()
        procs.append(subprocess.Popen(["/usr/bin/python3", app, seed, str(fport)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        furl = f"http://127.0.0.1:{fport}/dotplot?" + urllib.parse.urlencode(params)
        wait_http(furl)
        flask_rows = json.load(urllib.request.urlopen(furl))
        assert len(flask_rows) == len(answer), "the seed server must give the same answer"
        results["flask"] = {c: wrk(furl, c, seconds) for c in (1, 64)}

        lines = [f"### Serving the dot-plot query (20 genes × cell_type, one where, one dataset; "
                 f"4 datasets × {cells:,} cells)", "",
                 "| server | connections | requests/s | p50 ms | p90 ms | p99 ms | non-2xx |",
                 "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for name, label in (("cellcube", "`cellcube serve` (answer cache, the default)"),
                            ("gzip", "`cellcube serve`, `Accept-Encoding: gzip`"),
                            ("nocache", "`cellcube serve --cache-mb 0` (every answer computed)"),
                            ("distinct", "`--cache-mb 0`, distinct queries (random 20 genes each)"),
                            ("distinct-gzip", "`--cache-mb 0`, distinct queries, `Accept-Encoding: gzip`"),
                            ("flask", "Flask + h5py (seed layout)")):
            for c in (1, 64):
                r = results[name][c]
                lines.append(f"| {label} | {c} | {r['rps']:,.0f} | {r['lat']['50%']:.2f} | "
                             f"{r['lat']['90%']:.2f} | {r['lat']['99%']:.2f} | {r['non2xx']} |")
        one = results["nocache"][1]["rps"] / max(results["flask"][1]["rps"], 1e-9)
        lines += ["", f"With one connection and no answer cache, cellcube serves {one:,.0f}× the requests/s of the "
                      f"Flask + h5py server. wrk: {seconds} s per run, 2 threads, 30 s timeout.",
                  f"The answer is {sizes['identity']:,} bytes plain and {sizes['gzip']:,} gzip-compressed "
                  f"(compressed at level 1 when a gzip client first asks, and cached in both forms).",
                  f"Distinct queries draw 20 of {len(pool)} genes the dataset measured per request."]
        if results["flask"][64]["rps"] == 0:
            lines.append("At 64 connections the Flask server completed no request within the run "
                         "(each waits behind the others for the GIL and the HDF5 reads).")
        out = "\n".join(lines)
        print(out)
        if args.out:
            open(args.out, "w").write(out + "\n")
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
