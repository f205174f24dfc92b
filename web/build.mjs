// Bundles the page into dist/: index.html, app.js (our modules + Observable Plot + d3)
// and app.css. `cellcube serve` embeds dist/ at build time and serves it as / and /assets/.
import { build } from "esbuild";
import { copyFile, mkdir, rm } from "node:fs/promises";

const watch = process.argv.includes("--dev");
await rm("dist", { recursive: true, force: true });
await mkdir("dist", { recursive: true });
await build({
  entryPoints: { app: "src/main.js" },
  bundle: true,
  format: "esm",
  target: ["es2020", "chrome100", "firefox100", "safari15"],
  minify: !watch,
  legalComments: "none",
  outdir: "dist",
  logLevel: "warning",
});
await build({ entryPoints: { app: "src/app.css" }, bundle: true, minify: !watch, outdir: "dist", logLevel: "warning" });
await copyFile("src/index.html", "dist/index.html");
console.log("web: wrote dist/index.html, dist/app.js, dist/app.css");
