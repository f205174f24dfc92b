// Bundles the page into dist/: index.html, assets/app.js (our modules + Observable Plot
// + d3) and assets/app.css. `cellcube serve` embeds dist/ at build time and serves each
// file at its path under dist/ (index.html also as /), so the page lives at / and its
// bundle under /assets/ as docs/API.md says.
import { build } from "esbuild";
import { copyFile, mkdir, rm } from "node:fs/promises";

const dev = process.argv.includes("--dev"); // readable output for debugging
await rm("dist", { recursive: true, force: true });
await mkdir("dist/assets", { recursive: true });
await build({
  entryPoints: { app: "src/main.js" },
  bundle: true,
  format: "esm",
  target: ["es2020", "chrome100", "firefox100", "safari15"],
  minify: !dev,
  legalComments: "eof",
  outdir: "dist/assets",
  logLevel: "warning",
});
await build({ entryPoints: { app: "src/app.css" }, bundle: true, minify: !dev, outdir: "dist/assets", logLevel: "warning" });
await copyFile("src/index.html", "dist/index.html");
console.log("web: wrote dist/index.html, dist/assets/app.js, dist/assets/app.css");
