// Test fixture: a small store built with the real binary, `cellcube serve` on a free
// loopback port, and Debian's chromium driven by playwright-core.
//
// Environment:
//   CELLCUBE_BIN            the binary (default: build/cellcube in the repository)
//   CELLCUBE_E2E_STUB=1     use the node stub server (stub-server.mjs) instead of `serve`
//   CELLCUBE_E2E_REAL=1     fail instead of falling back to the stub when `serve` is missing
//   CELLCUBE_E2E_PAGE=dist  serve the page from web/dist (intercepted in the browser) while
//                           the API comes from the binary: tries a page change against a
//                           binary built before it
//   CHROMIUM                the browser (default /usr/bin/chromium)

import { execFileSync, spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { after, before } from "node:test";
import { chromium } from "playwright-core";
import { startStub } from "./stub-server.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(here, "../..");
export const BIN = process.env.CELLCUBE_BIN || path.join(ROOT, "build/cellcube");


export const BROWSER_ARGS = [
  "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
  "--disable-sync", "--no-first-run", "--disable-quic",
];

function commands() {
  try {
    const help = execFileSync(BIN, ["--help"], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
    return new Set([...help.matchAll(/^\s{2}(\w[\w-]*)\s/gm)].map((m) => m[1]));
  } catch (e) {
    return new Set(String(e.stdout || "").match(/^\s{2}(\w[\w-]*)\s/gm)?.map((s) => s.trim()) ?? []);
  }
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function waitHealthy(base, proc, ms = 20000) {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (proc && proc.exitCode != null) throw new Error(`cellcube serve exited with code ${proc.exitCode}`);
    try {
      const r = await fetch(`${base}/healthz`);
      if (r.ok) return;
    } catch {
      /* not up yet */
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`the server at ${base} did not become healthy within ${ms} ms`);
}

function buildStore(dir, cmds) {
  const inputs = path.join(dir, "inputs");
  if (cmds.has("synth")) {
    execFileSync(BIN, ["synth", "-o", inputs, "--datasets", "2", "--cells", "3000", "--genes", "300", "--seed", "3"], { stdio: "pipe" });
  } else {
    execFileSync("/usr/bin/python3", [path.join(here, "make_inputs.py"), inputs, "--cells", "3000", "--genes", "300", "--seed", "3"], { stdio: "pipe" });
  }
  const files = fs.readdirSync(inputs).filter((f) => f.endsWith(".h5ad")).sort().map((f) => path.join(inputs, f));
  const store = path.join(dir, "store.h5ad");
  execFileSync(BIN, ["build", "-o", store, "--quiet", ...files], { stdio: "pipe" });
  return store;
}

// `cellcube serve STORE` on a free loopback port, once healthy; returns {base, close()}.
export async function serveStore(store) {
  const port = await freePort();
  const proc = spawn(BIN, ["serve", store, "--port", String(port)], { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  proc.stderr.on("data", (d) => (stderr += d));
  const base = `http://127.0.0.1:${port}`;
  try {
    await waitHealthy(base, proc);
  } catch (e) {
    proc.kill("SIGKILL");
    throw new Error(`${e.message}\n${stderr}`);
  }
  return {
    base,
    async close() {
      proc.kill("SIGTERM");
      await new Promise((r) => (proc.exitCode != null ? r() : proc.once("exit", r)));
    },
  };
}

// Starts everything; returns {base, browser, kind, close()}.
export async function setup() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "cellcube-e2e-"));
  const cmds = fs.existsSync(BIN) ? commands() : new Set();
  const wantStub = process.env.CELLCUBE_E2E_STUB === "1";
  const real = !wantStub && cmds.has("serve");
  if (!real && !wantStub && process.env.CELLCUBE_E2E_REAL === "1") {
    throw new Error(`${BIN} has no 'serve' command (CELLCUBE_E2E_REAL=1 forbids the stub server)`);
  }
  let server = null, stub = null, base, kind;
  if (real) {
    server = await serveStore(buildStore(dir, cmds));
    base = server.base;
    kind = "cellcube serve";
  } else {
    const port = await freePort();
    const dist = path.join(ROOT, "web/dist");
    if (!fs.existsSync(path.join(dist, "index.html"))) throw new Error("web/dist is missing: run `make web` first");
    stub = await startStub({ port, dist });
    base = `http://127.0.0.1:${port}`;
    kind = "stub server";
    console.log(`# ${BIN} has no 'serve' command: testing the page against the stub server (tests/e2e/stub-server.mjs)`);
  }
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: BROWSER_ARGS,
  });
  const dist = path.join(ROOT, "web/dist");
  const pageFromDist = process.env.CELLCUBE_E2E_PAGE === "dist";
  return {
    base, browser, kind, dir,
    async newPage() {
      const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, acceptDownloads: true });
      if (pageFromDist) {
        await context.route((u) => u.origin === base && (u.pathname === "/" || u.pathname.startsWith("/assets/")), (route) => {
          const p = new URL(route.request().url()).pathname;
          const file = path.join(dist, p === "/" ? "index.html" : p);
          const type = { ".html": "text/html", ".js": "text/javascript", ".css": "text/css" }[path.extname(file)];
          return route.fulfill({ status: 200, contentType: type, body: fs.readFileSync(file) });
        });
      }
      return context.newPage();
    },
    async close() {
      await browser.close().catch(() => {});
      if (server) await server.close();
      if (stub) await new Promise((r) => stub.close(r));
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

// A describe block's own store. Before its tests, `make(dir)` builds the store in a
// fresh temporary folder and returns its path; it is served and a browser started. The
// fixture's `base` is the server's address and `open(search)` a 1280×800 page at that
// URL, recording its script errors in `page.errors`; after the tests all is stopped and
// the folder removed.
export function ownStore(prefix, make) {
  let server, browser, dir;
  const fixture = {
    base: null,
    async open(search) {
      const page = await (await browser.newContext({ viewport: { width: 1280, height: 800 }, acceptDownloads: true })).newPage();
      page.errors = [];
      page.on("pageerror", (e) => page.errors.push(e.message));
      await page.goto(`${fixture.base}/${search}`);
      return page;
    },
  };
  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
    server = await serveStore(await make(dir));
    fixture.base = server.base;
    browser = await chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium", headless: true, args: BROWSER_ARGS });
  });
  after(async () => {
    await browser?.close();
    await server?.close();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });
  return fixture;
}

export async function api(base, pathname, pairs = []) {
  const qs = pairs.map(([k, v]) => `${k}=${encodeURIComponent(v)}`).join("&");
  const r = await fetch(`${base}${pathname}${qs ? `?${qs}` : ""}`);
  const body = await r.json();
  if (!r.ok) throw new Error(`${pathname}: ${r.status} ${body.error}`);
  return body;
}

// Genes the store has: well-known markers first, then whatever autocomplete offers.
export async function pickGenes(base, n) {
  const out = [];
  for (const g of ["CD3E", "MS4A1", "LYZ", "NKG7", "CD14", "EPCAM", "ACTB", "GAPDH"]) {
    const { genes } = await api(base, "/api/v1/genes", [["q", g], ["limit", "1"]]);
    if (genes[0] && (genes[0].symbol || genes[0].id).toUpperCase() === g) out.push(g);
    if (out.length === n) return out;
  }
  for (const letter of "ABCDEFGHIJKLMNOPQRSTUVWXYZ") {
    const { genes } = await api(base, "/api/v1/genes", [["q", letter], ["limit", "20"]]);
    for (const g of genes) {
      const name = g.symbol || g.id;
      if (!out.includes(name)) out.push(name);
      if (out.length === n) return out;
    }
  }
  return out;
}

// Waits until the page has drawn (or explained) the state its URL holds.
export async function settled(page, timeout = 15000) {
  await page.waitForFunction(
    () => document.body.dataset.status !== "loading" && document.body.dataset.rendered === location.search,
    null, { timeout });
  return page.evaluate(() => document.body.dataset.status);
}

// The dot plot's dots (not the dashed rings that mark groups with few cells).
export const DOTS = '#chart g[aria-label="dot"]:not(.few-cells) circle';

export function dotFingerprint(page) {
  return page.$$eval(DOTS, (cs) => cs.map((c) => ["cx", "cy", "r", "fill"].map((a) => c.getAttribute(a)).join(",")).sort().join(";"));
}
