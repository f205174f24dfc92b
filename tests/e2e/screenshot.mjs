// Takes docs/screenshot.png: a realistic dot plot at 1280×800, with a tooltip open.
// Synthesises a 4-dataset atlas with `cellcube synth`, builds its store, serves it and
// drives Debian's chromium. The page comes from web/dist (so a fresh `make web` is
// pictured even before the binary is rebuilt); the API from the binary.
//
//   node tests/e2e/screenshot.mjs [OUT.png]      (CELLCUBE_BIN overrides build/cellcube)

import { execFileSync, spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";
import { BROWSER_ARGS, freePort, ROOT, settled } from "./harness.mjs";

const BIN = process.env.CELLCUBE_BIN || path.join(ROOT, "build/cellcube");
const out = path.resolve(process.argv[2] || path.join(ROOT, "docs/screenshot.png"));
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "cellcube-shot-"));
const GENES = ["CD3E", "CD8A", "NKG7", "MS4A1", "JCHAIN", "CD14", "LYZ", "FCGR3A", "CD68", "SFTPC", "EPCAM", "MKI67", "COL1A1", "PECAM1"];

let server;
try {
  execFileSync(BIN, ["synth", "-o", path.join(dir, "in"), "--datasets", "4", "--cells", "20000", "--genes", "2000", "--seed", "7", "--quiet"], { stdio: "inherit" });
  const inputs = fs.readdirSync(path.join(dir, "in")).filter((f) => f.endsWith(".h5ad")).map((f) => path.join(dir, "in", f));
  const store = path.join(dir, "atlas.h5ad");
  execFileSync(BIN, ["build", "-o", store, "--quiet", ...inputs], { stdio: "inherit" });
  const port = await freePort();
  server = spawn(BIN, ["serve", store, "--port", String(port)], { stdio: "ignore" });
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 100; i++) {
    if (await fetch(`${base}/healthz`).then((r) => r.ok, () => false)) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium", headless: true, args: BROWSER_ARGS });
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, deviceScaleFactor: 1 });
  const dist = path.join(ROOT, "web/dist");
  await context.route((u) => u.origin === base && (u.pathname === "/" || u.pathname.startsWith("/assets/")), (route) => {
    const p = new URL(route.request().url()).pathname;
    const file = path.join(dist, p === "/" ? "index.html" : p);
    const type = { ".html": "text/html", ".js": "text/javascript", ".css": "text/css" }[path.extname(file)];
    return route.fulfill({ status: 200, contentType: type, body: fs.readFileSync(file) });
  });
  const page = await context.newPage();
  const known = [];
  for (const g of GENES) {
    const a = await (await fetch(`${base}/api/v1/genes?q=${g}&limit=1`)).json();
    if (a.genes[0]?.symbol === g) known.push(g);
  }
  // The blood and the lung datasets, as a biologist comparing immune and lung markers would.
  await page.goto(`${base}/?genes=${known.join(",")}&by=cell_type&datasets=synth_01,synth_03&plot=dot&rows=cluster`);
  const status = await settled(page);
  if (status !== "ready") throw new Error(`the page says '${status}': ${await page.textContent("#message")}`);
  // Hover a large dot of the last gene column, so the tooltip opens over the free space beside the plot.
  const hit = await page.evaluate(() => {
    const circles = [...document.querySelectorAll('#chart g[aria-label="dot"]:not(.few-cells) circle')];
    const maxX = Math.max(...circles.map((c) => +c.getAttribute("cx")));
    const c = circles.filter((x) => +x.getAttribute("cx") === maxX).sort((a, b) => b.getAttribute("r") - a.getAttribute("r"))[0];
    const r = c.getBoundingClientRect();
    return { x: r.left + r.width / 2, y: r.top + r.height / 2 };
  });
  await page.mouse.move(hit.x, hit.y);
  await page.waitForTimeout(150);
  await page.screenshot({ path: out });
  await browser.close();
  console.log(`wrote ${path.relative(process.cwd(), out)}`);
} finally {
  server?.kill("SIGTERM");
  fs.rmSync(dir, { recursive: true, force: true });
}
