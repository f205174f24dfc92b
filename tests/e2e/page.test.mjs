// End-to-end tests of the web page in a real browser (Debian chromium, headless),
// against `cellcube serve` on a small synthetic store.  Run: node --test tests/e2e/

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { api, BIN, dotFingerprint, DOTS, ownStore, pickGenes, ROOT, settled, setup } from "./harness.mjs";

let env, base, genes, meta;

async function openPage(search = "") {
  const page = await env.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  page.errors = errors;
  await page.goto(`${base}/${search}`);
  return page;
}

async function apiRows(pairs) {
  return (await api(base, "/api/v1/query", pairs)).rows;
}

// A filter that leaves cells, on a column that is neither split on nor the dataset.
function filterColumn() {
  return meta.columns.find((c) => !["dataset", "cell_type"].includes(c.name) && c.values.length >= 2 && c.values.every((v) => v.n_cells > 0));
}

describe("web page", () => {
  before(async () => {
    env = await setup();
    base = env.base;
    genes = await pickGenes(base, 3);
    meta = await api(base, "/api/v1/meta");
    assert.equal(genes.length, 3, "the test store has at least three genes");
  });
  after(async () => {
    await env?.close();
  });

  test("the page shows the store and the filter of every column", async () => {
    const page = await openPage();
    assert.equal(await settled(page), "idle");
    assert.match(await page.textContent("#store-info"), new RegExp(meta.store.replace(/\./g, "\\.")));
    for (const c of meta.columns) {
      assert.equal(await page.locator(`.sec[data-column="${c.name}"]`).count(), 1, `filter section for ${c.name}`);
    }
    assert.deepEqual(page.errors, []);
  });

  test("a URL with genes draws one circle per group × gene of the API answer", async () => {
    const page = await openPage(`?genes=${genes.join(",")}&by=cell_type&plot=dot`);
    assert.equal(await settled(page), "ready");
    const rows = await apiRows([["genes", genes.join(",")], ["by", "cell_type"]]);
    assert.ok(rows.length >= genes.length);
    assert.equal(await page.locator(DOTS).count(), rows.length);
    const types = new Set(rows.map((r) => r.cell_type));
    assert.equal(await page.getAttribute("body", "data-groups"), String(types.size));
    // Legends for size and colour.
    assert.match(await page.textContent(".legend-box"), /Fraction of cells/);
    assert.match(await page.textContent(".legend-box"), /Mean expression/);
    assert.deepEqual(page.errors, []);
  });

  test("changing a filter redraws the plot and updates the other columns' counts", async () => {
    const col = filterColumn();
    assert.ok(col, "the store has a column to filter on");
    const page = await openPage(`?genes=${genes.join(",")}&by=cell_type&plot=dot`);
    await settled(page);
    const before = await dotFingerprint(page);
    const ctCounts = await page.locator('.sec[data-column="cell_type"] .val-count').allTextContents();
    const value = col.values[0].value;
    await page.locator(`.sec[data-column="${col.name}"] li[data-value="${value}"] input`).check();
    await page.waitForURL((u) => u.search.includes(`where=${col.name}:`));
    assert.equal(await settled(page), "ready");
    const rows = await apiRows([["genes", genes.join(",")], ["by", "cell_type"], ["where", `${col.name}:${value}`]]);
    assert.equal(await page.locator(DOTS).count(), rows.length);
    assert.notEqual(await dotFingerprint(page), before, "the dots changed");
    await page.waitForFunction((old) => {
      const now = [...document.querySelectorAll('.sec[data-column="cell_type"] .val-count')].map((e) => e.textContent);
      return now.join() !== old.join();
    }, ctCounts);
    // The filtered column itself keeps its faceted counts (the other values stay selectable).
    assert.ok(await page.locator(`.sec[data-column="${col.name}"] li.checked`).count() === 1);
  });

  test("Compare: a volcano circle per gene with a padj, the ranked table, a click adds the gene", async () => {
    const ct = meta.columns.find((c) => c.name === "cell_type").values[0].value;
    const answer = await api(base, "/api/v1/de", [["compare", "cell_type"], ["group1", ct]]);
    const withPadj = answer.rows.filter((r) => r.padj != null).length;
    assert.ok(withPadj > 0, "the test store gives p-values");
    const page = await openPage(`?plot=de&compare=cell_type&group1=${encodeURIComponent(ct)}&group2=rest`);
    assert.equal(await settled(page), "ready");
    assert.equal(await page.locator("svg.volcano circle").count(), withPadj);
    assert.ok((await page.locator(".de-table tbody tr").count()) >= Math.min(60, answer.rows.length));
    assert.match(await page.textContent(".de-test"), /Test: /);
    const first = answer.rows[0];
    await page.locator(".de-table tbody tr").first().click();
    await page.waitForURL((u) => (new URL(u).searchParams.get("genes") || "").split(",").includes(first.symbol || first.gene));
    // The Compare controls drive the URL; a reload redraws the same view.
    await page.reload();
    assert.equal(await settled(page), "ready");
    assert.equal(await page.locator("svg.volcano circle").count(), withPadj);
    const [download] = await Promise.all([page.waitForEvent("download"), page.click("#dl-csv")]);
    const csv = fs.readFileSync(await download.path(), "utf8");
    assert.equal(csv.split("\n")[0].split(",")[0], "gene");
    assert.deepEqual(page.errors, []);
  });

  test("a cell type's row label in the dot plot opens its markers", async () => {
    const page = await openPage(`?genes=${genes.join(",")}&by=cell_type&plot=dot`);
    await settled(page);
    const label = page.locator("#chart .markers-link").first();
    const text = await label.textContent();
    await label.click();
    await page.waitForURL((u) => new URL(u).searchParams.get("plot") === "de");
    const q = new URL(page.url()).searchParams;
    assert.equal(q.get("compare"), "cell_type");
    assert.ok(text.startsWith(q.get("group1")), `${text} / ${q.get("group1")}`);
    assert.equal(await settled(page), "ready");
    assert.ok(await page.locator("svg.volcano circle").count() > 0);
    assert.deepEqual(page.errors, []);
  });

  test("switching between dot plot, heatmap and bars", async () => {
    const page = await openPage(`?genes=${genes.join(",")}&by=cell_type&plot=dot`);
    await settled(page);
    const n = await page.locator(DOTS).count();
    await page.click('#plot-type button[data-value="heatmap"]');
    await page.waitForURL(/plot=heatmap/);
    await settled(page);
    assert.equal(await page.locator(DOTS).count(), 0);
    assert.equal(await page.locator('#chart g[aria-label="cell"] rect').count(), n);
    await page.click('#plot-type button[data-value="bars"]');
    await page.waitForURL(/plot=bars/);
    assert.equal(await settled(page), "ready");
    assert.equal(await page.locator('#chart g[aria-label="bar"] rect').count(), n);
    assert.ok(await page.locator('#chart g[aria-label="rule"] line').count() > 0, "error bars");
    if (meta.donor_column) {
      assert.ok(await page.locator(DOTS).count() > n, "per-donor points");
      assert.match(await page.textContent(".legend-box"), /per-donor means/);
    }
    await page.goBack();
    await page.waitForURL(/plot=heatmap/);
    await settled(page);
    assert.equal(await page.locator('#chart g[aria-label="cell"] rect').count(), n);
    assert.deepEqual(page.errors, []);
  });

  test("the URL holds the whole state: reload and back/forward redraw the same plot", async () => {
    const page = await openPage(`?genes=${genes.slice(0, 2).join(",")}&by=cell_type&plot=dot`);
    await settled(page);
    const twoGenes = await page.locator(DOTS).count();
    // Add a gene from the keyboard, split by two columns, cluster rows, scale colours.
    await page.fill("#gene-input", genes[2]);
    await page.press("#gene-input", "Enter");
    await page.waitForURL((u) => new URL(u).searchParams.get("genes")?.split(",").length === 3);
    await settled(page);
    const second = filterColumn().name;
    await page.selectOption("#by-2", second);
    await settled(page);
    await page.selectOption("#rows", "cluster");
    await settled(page);
    await page.click('#color button[data-value="scaled"]');
    await settled(page);
    const url = page.url();
    const q = new URL(url).searchParams;
    assert.equal(q.get("by"), `cell_type,${second}`);
    assert.equal(q.get("rows"), "cluster");
    assert.equal(q.get("color"), "scaled");
    const drawn = await dotFingerprint(page);
    const labels = await page.$$eval("#chart svg [aria-label='y-axis tick label'] text", (t) => t.map((x) => x.textContent));
    assert.ok(labels.some((l) => l.includes(" · ")), "rows are labelled 'first · second'");

    await page.reload();
    await settled(page);
    assert.equal(page.url(), url);
    assert.equal(await dotFingerprint(page), drawn);

    // A pasted link in a fresh page draws the same plot.
    const other = await openPage(new URL(url).search);
    await settled(other);
    assert.equal(await dotFingerprint(other), drawn);

    // Back through the history, to the two-gene plot.
    for (let i = 0; i < 4; i++) {
      await page.goBack();
      await settled(page);
    }
    assert.equal(new URL(page.url()).searchParams.get("genes"), genes.slice(0, 2).join(","));
    assert.equal(await page.locator(DOTS).count(), twoGenes);
    await page.goForward();
    await settled(page);
    assert.equal(new URL(page.url()).searchParams.get("genes"), genes.join(","));
  });

  test("gene box: autocomplete, Enter adds, Backspace removes the last gene", async () => {
    const page = await openPage(`?genes=${genes[0]}&by=cell_type`);
    await settled(page);
    await page.click("#gene-input");
    await page.keyboard.type(genes[1].slice(0, 2));
    await page.waitForSelector(".suggestion");
    assert.ok(await page.locator(".suggestion").count() > 0);
    await page.fill("#gene-input", genes[1]);
    await page.keyboard.press("Enter");
    await page.waitForURL((u) => new URL(u).searchParams.get("genes") === `${genes[0]},${genes[1]}`);
    assert.equal(await page.locator(".chip").count(), 2);
    await page.keyboard.press("Backspace");
    await page.waitForURL((u) => new URL(u).searchParams.get("genes") === genes[0]);
    assert.equal(await page.locator(".chip").count(), 1);
  });

  test("an unknown gene is reported beside the box with a suggestion; the others are still drawn", async () => {
    const typo = genes[0].slice(0, -1) + (genes[0].endsWith("X") ? "Y" : "X");
    const page = await openPage(`?genes=${genes[1]},${typo}&by=cell_type`);
    assert.equal(await settled(page), "ready");
    const msg = page.locator("#gene-msg");
    await msg.locator(".unknown-gene").waitFor();
    const text = await msg.textContent();
    assert.match(text, /Unknown gene/);
    assert.ok(text.includes(typo));
    assert.match(text, /did you mean/);
    assert.ok(await msg.locator("button.suggest").count() >= 1);
    assert.equal(await page.locator(".chip-bad").count(), 1);
    const rows = await apiRows([["genes", genes[1]], ["by", "cell_type"]]);
    assert.equal(await page.locator(DOTS).count(), rows.length);
    // Taking the suggestion replaces the gene and clears the message.
    const suggestion = await msg.locator("button.suggest").first().textContent();
    await msg.locator("button.suggest").first().click();
    await page.waitForURL((u) => new URL(u).searchParams.get("genes").includes(suggestion));
    await settled(page);
    assert.equal(await page.locator("#gene-msg .unknown-gene").count(), 0);
  });

  test("tooltips show every metric and flag a gene some datasets did not measure", async () => {
    // Find a gene that one dataset lacks, from autocomplete pages queried in batches.
    let partial = null;
    for (const letter of "ABCDEFGHIJKLMNOPQRSTUVWXYZ") {
      const { genes: page } = await api(base, "/api/v1/genes", [["q", letter], ["limit", "100"]]);
      if (!page.length) continue;
      const a = await api(base, "/api/v1/query", [["genes", page.map((g) => g.id).join(",")]]);
      // A gene some dataset lacks, expressed widely enough somewhere for a dot to hover.
      partial = a.genes.find((g) => g.not_measured_in.length && a.rows.some((r) => r.gene === g.id && r.frac >= 0.2));
      if (partial) break;
    }
    assert.ok(partial, "the test store has a gene that a dataset did not measure");
    const name = partial.symbol || partial.id;
    const page = await openPage(`?genes=${genes[0]},${name}&by=cell_type&plot=dot`);
    assert.equal(await settled(page), "ready");
    assert.match(await page.textContent("#footnote"), new RegExp(`${name} was not measured in ${partial.not_measured_in[0]}`));
    const ticks = await page.$$eval("#chart svg [aria-label='x-axis tick label'] text", (t) => t.map((x) => x.textContent));
    assert.ok(ticks.includes(`${name} *`), `the column label marks ${name}: ${ticks}`);
    // Hover the largest dot of that gene's column (scrolled into view if need be).
    const index = await page.evaluate((label) => {
      const svg = document.querySelector("#chart svg.chart");
      const tick = [...svg.querySelectorAll("[aria-label='x-axis tick label'] text")].find((t) => t.textContent === label);
      const x = tick.getBoundingClientRect().left + tick.getBoundingClientRect().width / 2;
      const dots = [...svg.querySelectorAll('g[aria-label="dot"]:not(.few-cells) circle')].map((c, i) => ({ r: c.getBoundingClientRect(), i }));
      const mine = dots.filter((d) => Math.abs(d.r.left + d.r.width / 2 - x) < 3).sort((a, b) => b.r.width - a.r.width)[0];
      return mine.i;
    }, `${name} *`);
    await page.locator('#chart svg.chart g[aria-label="dot"]:not(.few-cells) circle').nth(index).hover();
    await page.locator("#tooltip").waitFor({ state: "visible" });
    const tip = await page.textContent("#tooltip");
    for (const metric of ["cells", "expressing", "mean", "mean in expressing", "sum", "variance", "sd"]) assert.ok(tip.includes(metric), `tooltip shows ${metric}`);
    assert.match(tip, new RegExp(`not measured in ${partial.not_measured_in[0]}`));
    await page.mouse.move(2, 2);
    await page.locator("#tooltip").waitFor({ state: "hidden" });
  });

  test("downloads: CSV table, SVG and PNG figures", async () => {
    const page = await openPage(`?genes=${genes.join(",")}&by=cell_type&plot=dot`);
    await settled(page);
    const saved = {};
    for (const kind of ["csv", "svg", "png"]) {
      const [download] = await Promise.all([page.waitForEvent("download"), page.click(`#dl-${kind}`)]);
      const file = path.join(env.dir, `download.${kind}`);
      await download.saveAs(file);
      saved[kind] = fs.readFileSync(file);
      assert.ok(saved[kind].length > 0, `${kind} is not empty`);
      assert.ok(download.suggestedFilename().endsWith(`.${kind}`));
    }
    const csv = saved.csv.toString("utf8").trim().split(/\r?\n/);
    assert.match(csv[0], /^cell_type,gene,n_cells/);
    const rows = await apiRows([["genes", genes.join(",")], ["by", "cell_type"]]);
    assert.equal(csv.length - 1, rows.length);
    const svg = saved.svg.toString("utf8");
    assert.match(svg, /<svg[^>]*xmlns="http:\/\/www.w3.org\/2000\/svg"/);
    assert.equal((svg.match(/<circle/g) || []).length >= rows.length, true);
    assert.deepEqual([...saved.png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    assert.ok(saved.png.length > 2000);
  });

  test("violins: one path per (group, gene) with expressing cells, zero marks, tooltip numbers, URL", async () => {
    const pairs = [["genes", genes.join(",")], ["by", "cell_type"]];
    const answer = await api(base, "/api/v1/distribution", pairs);
    assert.equal(answer.edges.length, 65);
    const expressing = answer.rows.filter((r) => r.zeros != null && r.zeros < r.n_cells);
    const withZeros = answer.rows.filter((r) => r.zeros != null && r.zeros > 0);
    assert.ok(expressing.length > 0, "the test store has expressing cells for these genes");
    const page = await openPage(`?plot=violin&genes=${genes.join(",")}&by=cell_type`);
    assert.equal(await settled(page), "ready");
    assert.equal(await page.locator("#chart path.violin").count(), expressing.length);
    // One zero mark per group with zeros, carrying their share, and a label beside it.
    assert.equal(await page.locator("#chart circle.zeros").count(), withZeros.length);
    assert.equal(await page.locator("#chart text.zeros-label").count(), withZeros.length);
    const shares = await page.$$eval("#chart circle.zeros", (cs) => cs.map((c) => +c.getAttribute("data-share")).sort((a, b) => a - b));
    assert.deepEqual(shares, withZeros.map((r) => r.zeros / r.n_cells).sort((a, b) => a - b));
    const labels = await page.$$eval("#chart text.zeros-label", (ts) => ts.map((t) => t.textContent));
    assert.ok(labels.every((l) => /^(<?\d+(\.\d)?%)( zeros)?$/.test(l)), labels.join(" "));
    for (const legend of ["Violin", "Box", "Zeros"]) assert.match(await page.textContent(".legend-box"), new RegExp(legend));

    // Hover the violin of the group with the most expressing cells: the tooltip's numbers
    // are the histogram's quantiles (docs/QUERY.md), computed here independently.
    const target = [...expressing].sort((a, b) => (b.n_cells - b.zeros) - (a.n_cells - a.zeros))[0];
    const gene = answer.genes.find((g) => g.id === target.gene);
    const path = page.locator(`#chart path.violin[data-gene="${target.gene}"][data-group="${target.cell_type}"]`);
    assert.equal(await path.count(), 1);
    await path.scrollIntoViewIfNeeded();
    const box = await path.boundingBox();
    await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
    await page.locator("#tooltip").waitFor({ state: "visible" });
    const tip = Object.fromEntries(await page.$$eval("#tooltip tr", (trs) => trs.map((tr) => [tr.querySelector("th").textContent, tr.querySelector("td").textContent])));
    assert.match(await page.textContent("#tooltip .tt-head"), new RegExp(gene.symbol || gene.id));
    assert.equal(await page.textContent("#tooltip .tt-group"), target.cell_type);
    const quantile = (q, n, z, bins) => {
      const r = q * n;
      if (r <= z) return 0;
      const w = answer.edges[1] - answer.edges[0];
      let c = z;
      for (let i = 0; i < bins.length; i++) {
        if (c + bins[i] >= r) return answer.edges[i] + (w * (r - c)) / bins[i];
        c += bins[i];
      }
      return answer.edges[64];
    };
    const num = (s) => Number(s.replace(/,/g, ""));
    const near = (shown, want, what) => assert.ok(Math.abs(num(shown) - want) <= 0.006 * Math.max(Math.abs(want), 0.01), `${what}: shown ${shown}, expected ${want}`);
    const { n_cells: n, zeros: z, bins } = target;
    assert.equal(num(tip.cells), n);
    const [zShown, zPct] = /^([\d,]+) \((.*)%\)$/.exec(tip.zeros).slice(1);
    assert.equal(num(zShown), z);
    assert.ok(Math.abs(Number(zPct) - (100 * z) / n) <= 0.51, `% zeros ${zPct}`);
    near(tip.median, quantile(0.5, n, z, bins), "median");
    const [q25, q75] = tip["IQR (q25–q75)"].split(" – ");
    near(q25, quantile(0.25, n, z, bins), "q25");
    near(q75, quantile(0.75, n, z, bins), "q75");
    near(tip["median in expressing"], quantile(0.5, n - z, 0, bins), "median in expressing");

    // An all-zero group, if a finer split has one, gets the zero mark and no violin.
    for (const c of meta.columns.filter((x) => !["dataset", "cell_type"].includes(x.name))) {
      const fine = await api(base, "/api/v1/distribution", [["genes", genes.join(",")], ["by", `cell_type,${c.name}`]]);
      const allZero = fine.rows.find((r) => r.zeros != null && r.zeros === r.n_cells);
      if (!allZero) continue;
      await page.goto(`${base}/?plot=violin&genes=${genes.join(",")}&by=cell_type,${c.name}`);
      assert.equal(await settled(page), "ready");
      const label = `${allZero.cell_type} · ${allZero[c.name]}`;
      const sel = `[data-gene="${allZero.gene}"][data-group="${label}"]`;
      assert.equal(await page.locator(`#chart path.violin${sel}`).count(), 0);
      assert.equal(await page.locator(`#chart circle.zeros${sel}`).count(), 1);
      assert.equal(await page.locator("#chart path.violin").count(), fine.rows.filter((r) => r.zeros != null && r.zeros < r.n_cells).length);
      await page.goBack();
      break;
    }

    // The URL restores the violins: through the plot switcher, back, and a reload.
    await page.goto(`${base}/?plot=violin&genes=${genes.join(",")}&by=cell_type`);
    await settled(page);
    await page.click('#plot-type button[data-value="dot"]');
    await page.waitForURL(/plot=dot/);
    await settled(page);
    assert.equal(await page.locator("#chart path.violin").count(), 0);
    await page.goBack();
    assert.equal(await settled(page), "ready");
    assert.match(page.url(), /plot=violin/);
    assert.equal(await page.getAttribute('#plot-type button[data-value="violin"]', "aria-checked"), "true");
    assert.equal(await page.locator("#chart path.violin").count(), expressing.length);
    await page.reload();
    assert.equal(await settled(page), "ready");
    assert.equal(await page.locator("#chart path.violin").count(), expressing.length);

    // Downloads: the distribution rows as CSV, the violins in the SVG, a PNG.
    const saved = {};
    for (const kind of ["csv", "svg", "png"]) {
      const [download] = await Promise.all([page.waitForEvent("download"), page.click(`#dl-${kind}`)]);
      assert.match(download.suggestedFilename(), new RegExp(`_violin_by_cell_type\\.${kind}$`));
      saved[kind] = fs.readFileSync(await download.path(), kind === "png" ? null : "utf8");
    }
    assert.deepEqual([...saved.png.subarray(0, 4)], [0x89, 0x50, 0x4e, 0x47]);
    const csv = saved.csv.trim().split(/\r?\n/);
    assert.match(csv[0], /^cell_type,gene,n_cells,zeros,bin_00,.*,bin_63$/);
    assert.equal(csv.length - 1, answer.rows.length);
    assert.equal((saved.svg.match(/class="violin"/g) || []).length, expressing.length);
    assert.deepEqual(page.errors, []);
  });

  test("violins: more than six genes draws the first six and says so", async () => {
    const seven = await pickGenes(base, 7);
    assert.equal(seven.length, 7);
    const page = await openPage(`?plot=violin&genes=${seven.join(",")}&by=cell_type`);
    assert.equal(await settled(page), "ready");
    assert.match(await page.textContent(".plot-notice"), new RegExp(`first 6 genes; 1 more \\(${seven[6]}\\)`));
    const answer = await api(base, "/api/v1/distribution", [["genes", seven.slice(0, 6).join(",")], ["by", "cell_type"]]);
    assert.equal(await page.locator("#chart path.violin").count(), answer.rows.filter((r) => r.zeros != null && r.zeros < r.n_cells).length);
    assert.equal(await page.locator("#chart .gene-label").count(), 6);
    assert.deepEqual(page.errors, []);
  });

  test("Compare: the test selector is in the URL, and the test that ran is named above the table", async () => {
    const ct = meta.columns.find((c) => c.name === "cell_type").values[0].value;
    const page = await openPage(`?plot=de&compare=cell_type&group1=${encodeURIComponent(ct)}&group2=rest&test=wilcoxon`);
    assert.equal(await settled(page), "ready");
    assert.equal(await page.inputValue("#cmp-test"), "wilcoxon");
    assert.equal(await page.getAttribute(".de-test", "data-test"), "wilcoxon");
    assert.match(await page.textContent(".de-test"), /Wilcoxon/);
    await page.selectOption("#cmp-test", "cells");
    await page.waitForURL((u) => new URL(u).searchParams.get("test") === "cells");
    assert.equal(await settled(page), "ready");
    assert.equal(await page.getAttribute(".de-test", "data-test"), "cells");
    await page.selectOption("#cmp-test", "auto");
    await page.waitForURL((u) => !new URL(u).searchParams.has("test"));
    assert.equal(await settled(page), "ready");
    const auto = await api(base, "/api/v1/de", [["compare", "cell_type"], ["group1", ct]]);
    assert.equal(await page.getAttribute(".de-test", "data-test"), auto.test);
    assert.match(await page.textContent(".de-test"), /\(auto\)/);
    await page.goBack();
    assert.equal(await settled(page), "ready");
    assert.equal(await page.inputValue("#cmp-test"), "cells");
    await page.goBack();
    assert.equal(await settled(page), "ready");
    assert.equal(await page.inputValue("#cmp-test"), "wilcoxon");
    await page.reload();
    assert.equal(await settled(page), "ready");
    assert.equal(await page.getAttribute(".de-test", "data-test"), "wilcoxon");
    assert.deepEqual(page.errors, []);
  });

  test("Compare: the direction and minimum-fraction controls filter the table, through the URL", async () => {
    const ct = meta.columns.find((c) => c.name === "cell_type").values[0].value;
    const page = await openPage(`?plot=de&compare=cell_type&group1=${encodeURIComponent(ct)}&group2=rest&test=cells`);
    assert.equal(await settled(page), "ready");
    assert.equal(await page.inputValue("#cmp-direction"), "both");
    await page.selectOption("#cmp-direction", "up");
    await page.waitForURL((u) => new URL(u).searchParams.get("direction") === "up");
    assert.equal(await settled(page), "ready");
    await page.selectOption("#cmp-min-frac", "0.1");
    await page.waitForURL((u) => new URL(u).searchParams.get("min_frac") === "0.1");
    assert.equal(await settled(page), "ready");
    const want = await api(base, "/api/v1/de", [["compare", "cell_type"], ["group1", ct], ["test", "cells"], ["direction", "up"], ["min_frac", "0.1"]]);
    assert.ok(want.rows.length > 0 && want.rows.every((r) => r.logfc > 0 && r.frac1 >= 0.1));
    const shown = await page.locator(".de-table tr.de-row td:first-child").allTextContents();
    assert.deepEqual(shown, want.rows.slice(0, shown.length).map((r) => r.symbol || r.gene));
    assert.equal(shown.length, Math.min(60, want.rows.length));
    await page.reload();
    assert.equal(await settled(page), "ready");
    assert.equal(await page.inputValue("#cmp-direction"), "up");
    assert.equal(await page.inputValue("#cmp-min-frac"), "0.1");
    assert.deepEqual(page.errors, []);
  });

  test("Compare: volcano labels of the top genes of each side never overlap; the table fills the height; split and orders are off", async () => {
    const ct = meta.columns.find((c) => c.name === "cell_type").values[0].value;
    const answer = await api(base, "/api/v1/de", [["compare", "cell_type"], ["group1", ct], ["test", "cells"]]);
    const sig = answer.rows.filter((r) => r.padj != null && r.padj <= 0.05);
    const topUp = sig.find((r) => r.logfc > 0), topDown = sig.find((r) => r.logfc < 0);
    assert.ok(topUp && topDown, "the test store has significant genes on both sides");
    const page = await openPage(`?genes=${genes[0]}&plot=dot&by=cell_type`);
    assert.equal(await settled(page), "ready");
    assert.equal(await page.isVisible("#compare-ctl"), false, "no Compare row in the dot plot");
    assert.equal(await page.isVisible("#order-row"), true);
    await page.goto(`${base}/?plot=de&compare=cell_type&group1=${encodeURIComponent(ct)}&group2=rest&test=cells`);
    assert.equal(await settled(page), "ready");
    assert.equal(await page.isVisible("#order-row"), false, "colour and orders are hidden in Compare");
    assert.match(await page.getAttribute("#split-ctl", "class"), /disabled/);
    const labels = await page.locator("svg.volcano text.volcano-label").evaluateAll((ts) =>
      ts.map((t) => { const r = t.getBoundingClientRect(); return { gene: t.textContent, x0: r.left, y0: r.top, x1: r.right, y1: r.bottom }; }));
    const names = labels.map((l) => l.gene);
    assert.ok(names.includes(topUp.symbol || topUp.gene), `${names} has the top up gene`);
    assert.ok(names.includes(topDown.symbol || topDown.gene), `${names} has the top down gene`);
    for (let i = 0; i < labels.length; i++) {
      for (let j = i + 1; j < labels.length; j++) {
        const a = labels[i], b = labels[j];
        const overlap = a.x0 < b.x1 - 0.5 && b.x0 < a.x1 - 0.5 && a.y0 < b.y1 - 0.5 && b.y0 < a.y1 - 0.5;
        assert.ok(!overlap, `labels ${a.gene} and ${b.gene} overlap`);
      }
    }
    // The table: beside the volcano, at least 12 rows in view, scrolling on its own.
    const box = await page.locator(".de-table-box").boundingBox();
    const volcano = await page.locator("svg.volcano").boundingBox();
    assert.ok(box.x >= volcano.x + volcano.width - 1, "the table is beside the volcano");
    const rowH = (await page.locator(".de-table tr.de-row").first().boundingBox()).height;
    assert.ok(box.height / rowH >= 12, `the table shows ${Math.floor(box.height / rowH)} rows`);
    assert.deepEqual(page.errors, []);
  });

  test("Markers: a card per value with its top genes from the API; a gene adds to the list; the markers' dot plot; a CSV named after the view", async () => {
    const answer = await api(base, "/api/v1/markers", [["column", "cell_type"], ["top", "5"]]);
    const byValue = new Map();
    for (const r of answer.rows) byValue.set(r.cell_type, [...(byValue.get(r.cell_type) ?? []), r.symbol || r.gene]);
    assert.ok(byValue.size >= 2, "the test store has markers for two cell types");
    const page = await openPage("?plot=markers&compare=cell_type");
    assert.equal(await settled(page), "ready");
    assert.equal(await page.locator(".mk-card").count(), byValue.size);
    for (const [value, names] of byValue) {
      const card = page.locator(`.mk-card[data-value="${value.replace(/"/g, '\\"')}"]`);
      assert.deepEqual(await card.locator(".mk-gene").allTextContents(), names, value);
    }
    const names = [...byValue.values()][0];
    await page.locator(".mk-card").first().locator(".mk-gene").first().click();
    await page.waitForURL((u) => (new URL(u).searchParams.get("genes") || "") === names[0]);
    assert.match(await page.getAttribute(".mk-card >> nth=0 >> .mk-gene >> nth=0", "class"), /added/);
    await page.locator(".mk-card").first().locator(".mk-all").click();
    await page.waitForURL((u) => (new URL(u).searchParams.get("genes") || "").split(",").length === names.length);
    const [download] = await Promise.all([page.waitForEvent("download"), page.click("#dl-csv")]);
    assert.equal(download.suggestedFilename(), "markers_cell_type.csv");
    const csv = fs.readFileSync(await download.path(), "utf8").trim().split(/\r?\n/);
    assert.match(csv[0], /^cell_type,gene,symbol,/);
    assert.equal(csv.length - 1, answer.rows.length);
    // The minimum fraction applies to the markers too, through the URL.
    await page.selectOption("#cmp-min-frac", "0.25");
    await page.waitForURL((u) => new URL(u).searchParams.get("min_frac") === "0.25");
    assert.equal(await settled(page), "ready");
    const strict = await api(base, "/api/v1/markers", [["column", "cell_type"], ["top", "5"], ["min_frac", "0.25"]]);
    assert.ok(strict.rows.every((r) => r.frac1 >= 0.25));
    assert.equal(await page.locator(".mk-gene").count(), strict.rows.length);
    await page.selectOption("#cmp-min-frac", "0");
    await page.waitForURL((u) => !new URL(u).searchParams.has("min_frac"));
    assert.equal(await settled(page), "ready");
    // The marker dot plot: the top three of each card, each gene once, in card order.
    const want = [];
    for (const ns of byValue.values()) for (const n of ns.slice(0, 3)) if (!want.some((w) => w.toLowerCase() === n.toLowerCase())) want.push(n);
    await page.click("#mk-plot");
    await page.waitForURL((u) => new URL(u).searchParams.get("plot") === "dot");
    assert.equal(await settled(page), "ready");
    assert.deepEqual((new URL(page.url()).searchParams.get("genes") || "").split(","), want.slice(0, 60));
    assert.equal(new URL(page.url()).searchParams.get("by"), "cell_type");
    assert.deepEqual(page.errors, []);
  });

  test("the clustered heatmap draws its dendrograms: one elbow per merge, leaves at the rows' and genes' centres", async () => {
    const page = await openPage(`?genes=${genes.join(",")}&by=cell_type&plot=heatmap&rows=cluster&cols=cluster`);
    assert.equal(await settled(page), "ready");
    const rows = Number(await page.getAttribute("body", "data-groups"));
    const tree = async (which) => page.locator(`#chart path.dendrogram-${which}`).getAttribute("d");
    const elbows = (d) => d.split("M").filter(Boolean).map((e) => e.split("L").map((p) => p.split(",").map(Number)));
    const rowElbows = elbows(await tree("rows"));
    assert.equal(rowElbows.length, rows - 1, "rows - 1 merges");
    // Every row's centre (from the heatmap's cells) is the foot of an elbow at the leaves' edge.
    const centres = await page.locator('#chart g[aria-label="cell"] rect').evaluateAll((rs) =>
      [...new Set(rs.map((r) => +r.getAttribute("y") + +r.getAttribute("height") / 2))]);
    assert.equal(centres.length, rows);
    const feet = rowElbows.flatMap((e) => [e[0], e[3]]);
    const minX = Math.min(...feet.map((p) => p[0]));
    for (const y of centres) assert.ok(feet.some((p) => Math.abs(p[0] - minX) < 0.01 && Math.abs(p[1] - y) < 0.6), `row at ${y} is a leaf`);
    assert.equal(elbows(await tree("genes")).length, genes.length - 1);
    await page.selectOption("#rows", "name");
    assert.equal(await settled(page), "ready");
    assert.equal(await page.locator("#chart path.dendrogram-rows").count(), 0, "no row dendrogram unless clustered");
    assert.deepEqual(page.errors, []);
  });

  test("legends keep their text inside, and exported figures carry the filters, datasets, legend and a name that says what they show", async () => {
    const ds = meta.datasets[0].name;
    const page = await openPage(`?genes=${genes.join(",")}&by=cell_type&plot=heatmap&color=scaled&datasets=${ds}`);
    assert.equal(await settled(page), "ready");
    const inside = () => page.locator("svg.legend").evaluateAll((ls) => ls.every((l) => {
      const box = l.getBoundingClientRect();
      return [...l.querySelectorAll("text")].every((t) => t.getBoundingClientRect().right <= box.right + 0.5);
    }));
    assert.ok(await inside(), "the scaled legend's subtitle is not clipped");
    const [svgDl] = await Promise.all([page.waitForEvent("download"), page.click("#dl-svg")]);
    assert.equal(svgDl.suggestedFilename(), `${genes.join("_")}_heatmap_by_cell_type.svg`);
    const svg = fs.readFileSync(await svgDl.path(), "utf8");
    const caption = [...svg.matchAll(/<text[^>]*class="caption"[^>]*>([^<]*)</g)].map((m) => m[1]).join(" ");
    assert.match(caption, new RegExp(`datasets: ${ds}`));
    assert.match(svg, /Scaled mean/);
    const ct = meta.columns.find((c) => c.name === "cell_type").values[0].value;
    await page.goto(`${base}/?plot=de&compare=cell_type&group1=${encodeURIComponent(ct)}&group2=rest&datasets=${ds}`);
    assert.equal(await settled(page), "ready");
    assert.ok(await inside());
    const [deDl] = await Promise.all([page.waitForEvent("download"), page.click("#dl-svg")]);
    assert.equal(deDl.suggestedFilename(), `de_cell_type_${ct.replace(/[^\w.-]+/g, "-")}_vs_rest.svg`);
    const de = fs.readFileSync(await deDl.path(), "utf8");
    assert.match(de, /higher on side 1/, "the volcano's legend is in the file");
    assert.match([...de.matchAll(/<text[^>]*class="caption"[^>]*>([^<]*)</g)].map((m) => m[1]).join(" "), new RegExp(`datasets: ${ds}`));
    assert.deepEqual(page.errors, []);
  });

  test("groups with fewer than 10 cells get a dashed ring, and their tooltip says so", async () => {
    // A split fine enough to have small groups, found from the API (nothing hard-coded).
    let by = null, rows = null;
    for (const c of meta.columns.filter((x) => !["dataset", "cell_type"].includes(x.name))) {
      const r = await apiRows([["genes", genes.join(",")], ["by", `cell_type,${c.name}`]]);
      if (r.some((x) => x.n_cells < 10) && r.some((x) => x.n_cells >= 10)) { by = `cell_type,${c.name}`; rows = r; break; }
    }
    assert.ok(by, "the test store has groups of fewer than 10 cells under some split");
    const page = await openPage(`?genes=${genes.join(",")}&by=${by}&plot=dot`);
    assert.equal(await settled(page), "ready");
    const few = rows.filter((x) => x.n_cells < 10).length;
    assert.equal(await page.locator("#chart g.few-cells circle").count(), few);
    assert.equal(await page.locator(DOTS).count(), rows.length);
    assert.match(await page.textContent(".legend-box"), /Fewer than 10 cells/);
    // Hover one ring's dot: its tooltip gives n and the warning.
    const box = await page.locator("#chart g.few-cells circle").first().boundingBox();
    await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
    await page.waitForSelector("#tooltip:not([hidden]) .tt-few");
    assert.match(await page.textContent("#tooltip .tt-few"), /Only \d+ cells? in this group/);
    await page.click('#plot-type button[data-value="heatmap"]');
    await page.waitForURL(/plot=heatmap/);
    await settled(page);
    assert.equal(await page.locator("#chart g.few-cells circle").count(), few);
    assert.deepEqual(page.errors, []);
  });

  test("with one dataset ticked, the filters list the values it has cells of first", async () => {
    const ds = meta.datasets[0].name;
    const page = await openPage(`?genes=${genes.join(",")}&by=cell_type&plot=dot&datasets=${encodeURIComponent(ds)}`);
    assert.equal(await settled(page), "ready");
    const counts = await api(base, "/api/v1/counts", [["datasets", ds]]);
    const ct = counts.columns.find((c) => c.name === "cell_type").values;
    const withCells = ct.filter((v) => v.n_cells > 0).length;
    assert.ok(withCells > 0);
    await page.waitForFunction((n) => document.querySelectorAll('.sec[data-column="cell_type"] li.val:not(.zero)').length >= Math.min(n, 8), withCells);
    const zeros = await page.$$eval('.sec[data-column="cell_type"] li.val', (lis) => lis.map((li) => li.classList.contains("zero")));
    const firstZero = zeros.indexOf(true);
    assert.ok(firstZero === -1 || zeros.slice(firstZero).every(Boolean), `a value with cells after one without: ${zeros}`);
    assert.deepEqual(page.errors, []);
  });

  test("an empty selection says that no cells match", async () => {
    // Find two filters whose combination holds no cells, from the faceted counts.
    let empty = null;
    for (const c of meta.columns.filter((x) => x.name !== "dataset")) {
      for (const v of c.values) {
        const counts = await api(base, "/api/v1/counts", [["where", `${c.name}:${v.value}`]]);
        for (const other of counts.columns) {
          if (other.name === c.name || other.name === "dataset") continue;
          const zero = other.values.find((x) => x.n_cells === 0);
          if (zero) empty = [[c.name, v.value], [other.name, zero.value]];
          if (empty) break;
        }
        if (empty) break;
      }
      if (empty) break;
    }
    assert.ok(empty, "the test store has two filters that exclude each other");
    const where = empty.map(([c, v]) => `where=${encodeURIComponent(`${c}:${v}`)}`).join("&");
    const page = await openPage(`?genes=${genes.join(",")}&by=cell_type&${where}&plot=dot`);
    assert.equal(await settled(page), "empty");
    assert.match(await page.textContent("#message"), /No cells match these filters/);
    assert.equal(await page.locator("#chart svg").count(), 0);
    await page.click("#message button");
    assert.equal(await settled(page), "ready");
    assert.ok(await page.locator(DOTS).count() > 0);
  });

  test("loading: a spinner shows, the page stays usable, a stale answer is dropped", async () => {
    const page = await openPage(`?genes=${genes.join(",")}&by=cell_type&plot=dot`);
    await settled(page);
    // Hold every new query for a while.
    await page.route("**/api/v1/query?**", async (route) => {
      await new Promise((r) => setTimeout(r, 700));
      await route.continue().catch(() => {});
    });
    await page.selectOption("#by-1", filterColumn().name);
    await page.locator("#spinner").waitFor({ state: "visible" });
    // Still responsive: typing into the gene box works while the query is in flight.
    await page.fill("#gene-input", "abc");
    assert.equal(await page.inputValue("#gene-input"), "abc");
    await page.fill("#gene-input", "");
    await page.click('#plot-type button[data-value="heatmap"]');
    assert.equal(await settled(page), "ready");
    assert.match(page.url(), /plot=heatmap/);
    assert.ok(await page.locator('#chart g[aria-label="cell"] rect').count() > 0);
    assert.equal(await page.locator("#spinner").isHidden(), true);
  });

  test("an unreachable server is explained, with a way to retry", async () => {
    const page = await openPage(`?genes=${genes[0]}&by=cell_type`);
    await settled(page);
    await page.route("**/api/v1/**", (route) => route.abort("connectionrefused"));
    const col = filterColumn();
    await page.locator(`.sec[data-column="${col.name}"] li[data-value="${col.values[1].value}"] input`).check();
    assert.equal(await settled(page), "error");
    assert.match(await page.textContent("#message"), /Cannot reach the cellcube server/);
    await page.unroute("**/api/v1/**");
    await page.click("#message button");
    assert.equal(await settled(page), "ready");
  });
});

// A store of scaled data (krumsiek11's X: values below 0), served on its own.
describe("web page on scaled data", () => {
  const server = ownStore("cellcube-e2e-scaled-", (dir) => {
    const file = path.join(ROOT, "..", "shared", "data", "h5ad", "anndata-0.7_krumsiek11_dense-f32.h5ad");
    const scaled = path.join(dir, "scaled.h5ad");
    execFileSync(BIN, ["build", "-o", scaled, "--quiet", `krumsiek11=${file}`], { stdio: "pipe" });
    return scaled;
  });

  test("the footnote names the scaled dataset and the tooltip gives no mean in expressing cells", async () => {
    const answer = await api(server.base, "/api/v1/query", [["genes", "Gata1"], ["by", "cell_type"], ["metrics", "n_cells,nnz,mean_expr"]]);
    assert.ok(answer.rows.some((r) => r.nnz > 0), "Gata1 has cells above 0");
    assert.ok(answer.rows.every((r) => r.mean_expr === null), "the server leaves mean_expr empty");
    const page = await server.open("?genes=Gata1&by=cell_type&plot=dot");
    assert.equal(await settled(page), "ready");
    assert.match(await page.textContent("#footnote"), /dataset 'krumsiek11' holds values below 0/);
    const dots = page.locator(DOTS);
    assert.equal(await dots.count(), answer.rows.length);
    const tips = [];
    for (let i = 0; i < answer.rows.length; ++i) {
      await dots.nth(i).hover();
      await page.locator("#tooltip").waitFor({ state: "visible" });
      tips.push(await page.textContent("#tooltip"));
      await page.mouse.move(2, 2);
      await page.locator("#tooltip").waitFor({ state: "hidden" });
    }
    // Every group shows no number there; those with expressing cells say why.
    assert.ok(tips.every((t) => /mean in expressing—/.test(t)), tips.join("\n"));
    const why = tips.filter((t) => /mean in expressing— \(scaled data\)/.test(t) && /values below 0 \(scaled data\)/.test(t));
    assert.equal(why.length, answer.rows.filter((r) => r.nnz > 0).length, tips.join("\n"));
    assert.deepEqual(page.errors, []);
  });

  test("violins of scaled data: no histogram, said in the row and the footnote", async () => {
    const answer = await api(server.base, "/api/v1/distribution", [["genes", "Gata1"], ["by", "cell_type"]]);
    assert.ok(answer.rows.length > 0 && answer.rows.every((r) => r.zeros === null && r.bins === null));
    const page = await server.open("?genes=Gata1&by=cell_type&plot=violin");
    assert.equal(await settled(page), "ready");
    assert.equal(await page.locator("#chart path.violin").count(), 0);
    assert.equal(await page.locator("#chart circle.zeros").count(), 0);
    assert.equal(await page.locator("#chart .no-hist").count(), answer.rows.length);
    assert.match(await page.textContent("#footnote"), /krumsiek11/);
    assert.deepEqual(page.errors, []);
  });
});

// The ontology's tree (docs/ONTOLOGY.md, docs/WEB.md): a synthetic atlas with CELLxGENE
// term id columns, built with the demo's term maps (data/ontology).
describe("web page with ontology terms", () => {
  const server = ownStore("cellcube-e2e-terms-", (dir) => {
    execFileSync(BIN, ["synth", "-o", dir, "--datasets", "2", "--cells", "3000", "--genes", "400", "--term-ids", "--quiet"], { stdio: "pipe" });
    const store = path.join(dir, "terms.h5ad");
    const maps = ["CL-ontology-v2026-03-26", "UBERON-ontology-v2026-04-01", "MONDO-ontology-v2026-05-05"]
      .flatMap((m) => ["--ontology", path.join(ROOT, "data", "ontology", `${m}.subset.json.gz`)]);
    execFileSync(BIN, ["build", "-o", store, "--quiet", ...maps, path.join(dir, "synth_01.h5ad"), path.join(dir, "synth_02.h5ad")], { stdio: "pipe" });
    return store;
  });
  const openTree = (search) => server.open(search);
  // A label's own text (a row that toggles or opens markers also holds a <title>).
  const tickLabels = (page) => page.locator('g[aria-label="y-axis tick label"] text').evaluateAll((ts) => ts.map((t) => t.firstChild.textContent));
  const clean = (label) => label.replace(/[\u00a0▸▾ ]+/g, " ").trim();

  test("the Tree switch rolls cell types up: indented rows in the API's order, collapse and expand in the URL", async () => {
    const page = await openTree("?genes=CD3E&by=cell_type&plot=dot");
    assert.equal(await settled(page), "ready");
    assert.equal(await page.isVisible("#tree-ctl"), true);
    await page.locator("#tree").check();
    await page.waitForURL((u) => u.search.includes("rollup=cell_type"));
    assert.equal(await settled(page), "ready");
    const answer = await api(server.base, "/api/v1/query", [["genes", "CD3E"], ["by", "cell_type"], ["rollup", "cell_type"]]);
    const depthOf = new Map(answer.rows.map((r) => [r.cell_type, r.depth]));
    // Shown: the top rows and their children (the default), in the API's pre-order.
    const top = answer.rows.filter((r) => r.depth === 0).map((r) => r.cell_type);
    let labels = (await tickLabels(page)).map(clean);
    assert.ok(labels.length > top.length, "children of the top rows show");
    assert.deepEqual(labels, answer.rows.map((r) => r.cell_type).filter((l) => labels.includes(l)));
    for (const l of labels) assert.ok(depthOf.get(l) <= 1, `${l} is a top row or its child`);
    const raw = await tickLabels(page);
    const child = raw.find((t) => depthOf.get(clean(t)) === 1 && t.includes("▸"));
    assert.ok(child, "a closed child row with subtypes");
    assert.ok(child.startsWith("\u00a0\u00a0\u00a0"), "children are indented");
    // Open it: its children appear, and the URL names it.
    const name = clean(child);
    const id = answer.rows.find((r) => r.cell_type === name).cell_type_ontology_term_id;
    await page.locator('g[aria-label="y-axis tick label"] text', { hasText: name }).first().click();
    await page.waitForURL((u) => decodeURIComponent(u.search).includes(id));
    assert.equal(await settled(page), "ready");
    labels = (await tickLabels(page)).map(clean);
    const at = answer.rows.findIndex((r) => r.cell_type === name);
    const next = answer.rows[at + 1].cell_type;
    assert.ok(labels.includes(next), `${next} shows under ${name}`);
    // Reload restores it; closing the top row hides everything below it.
    await page.reload();
    assert.equal(await settled(page), "ready");
    assert.ok((await tickLabels(page)).map(clean).includes(next));
    await page.locator('g[aria-label="y-axis tick label"] text', { hasText: top[0] }).first().click();
    assert.equal(await settled(page), "ready");
    labels = (await tickLabels(page)).map(clean);
    assert.ok(!labels.includes(next) && labels.includes(top[0]));
    assert.deepEqual(page.errors, []);
  });

  test("a filter offers 'T cell (and subtypes)' and selects the whole subtree", async () => {
    const page = await openTree("?genes=CD3E&by=tissue&plot=dot");
    assert.equal(await settled(page), "ready");
    await page.locator('.sec[data-column="cell_type"] .sec-search').fill("mature alpha");
    const group = page.locator('.sec[data-column="cell_type"] li.group', { hasText: "mature alpha-beta T cell (and subtypes)" });
    await group.locator("input").check();
    await page.waitForURL((u) => u.search.includes("rollup=cell_type") && u.search.includes("where=cell_type:mature"));
    assert.equal(await settled(page), "ready");
    const want = await api(server.base, "/api/v1/query", [["genes", "CD3E"], ["by", "tissue"], ["rollup", "cell_type"], ["where", "cell_type:mature alpha-beta T cell"]]);
    const cd4 = await api(server.base, "/api/v1/query", [["genes", "CD3E"], ["by", "tissue"], ["where", "cell_type:CD4-positive, alpha-beta T cell"]]);
    const sum = (a) => a.rows.reduce((t, r) => t + r.n_cells, 0);
    assert.ok(sum(want) > sum(cd4), "the subtree holds more than one of its types");
    assert.equal(await page.getAttribute("body", "data-groups"), String(want.rows.length));
    assert.deepEqual(page.errors, []);
  });
});

// Datasets that differ: donors in only one of two datasets, a column with one value for
// every cell ('assay') and one whose cells are all missing ('note').
describe("web page on datasets that differ", () => {
  const server = ownStore("cellcube-e2e-differ-", (dir) => {
    execFileSync(BIN, ["synth", "-o", dir, "--datasets", "2", "--cells", "3000", "--genes", "300", "--seed", "3", "--quiet"], { stdio: "pipe" });
    execFileSync("/usr/bin/python3", [path.join(ROOT, "tests/e2e/make_differing_inputs.py"), path.join(dir, "synth_01.h5ad"), path.join(dir, "synth_02.h5ad"), path.join(dir, "in")], { stdio: "pipe" });
    const store = path.join(dir, "differ.h5ad");
    execFileSync(BIN, ["build", "-o", store, "--quiet", "--groupby", "disease,sex,donor,assay,note",
      path.join(dir, "in", "synth_01_differs.h5ad"), path.join(dir, "in", "synth_02_differs.h5ad")], { stdio: "pipe" });
    return store;
  });
  const open = (search) => server.open(search);

  test("bars: the legend says the dots and error bars cover only the cells with a donor, how many, and which dataset has none", async () => {
    const gene = (await api(server.base, "/api/v1/genes", [["q", "CD3E"], ["limit", "1"]])).genes[0].symbol;
    const all = await api(server.base, "/api/v1/query", [["genes", gene], ["by", "cell_type"], ["metrics", "n_cells"]]);
    const perDonor = await api(server.base, "/api/v1/query", [["genes", gene], ["by", "cell_type,dataset,donor"], ["metrics", "n_cells"]]);
    const cells = all.rows.reduce((t, r) => t + r.n_cells, 0);
    const donorCells = perDonor.rows.filter((r) => r.donor !== "NA").reduce((t, r) => t + r.n_cells, 0);
    assert.ok(donorCells > 0 && donorCells < cells);
    const page = await open(`?genes=${gene}&by=cell_type&plot=bars`);
    assert.equal(await settled(page), "ready");
    const legend = (await page.locator(".legend-box svg.legend text").allTextContents()).join(" ");
    const fmt = (n) => n.toLocaleString("en-US");
    assert.match(legend, new RegExp(`only the cells with a donor: ${fmt(donorCells)} of the ${fmt(cells)} cells the bars average`));
    assert.match(legend, /synth_01_differs has no donors/);
    // A bar holding cells of both datasets says so in its tooltip.
    const mixed = all.rows.find((r) => {
      const d = perDonor.rows.filter((x) => x.cell_type === r.cell_type && x.donor !== "NA").reduce((t, x) => t + x.n_cells, 0);
      return d > 0 && d < r.n_cells;
    });
    assert.ok(mixed, "a cell type in both datasets");
    const tick = page.locator('#chart g[aria-label="y-axis tick label"] text', { hasText: mixed.cell_type }).first();
    const t = await tick.boundingBox();
    await page.mouse.move(t.x + t.width + 30, t.y + t.height / 2);
    await page.locator("#tooltip").waitFor({ state: "visible" });
    assert.match(await page.textContent("#tooltip"), /cells with a donor/);
    assert.deepEqual(page.errors, []);
  });

  test("the sidebar and the Split-by menus leave out a column with one value and one with only NA", async () => {
    const meta = await api(server.base, "/api/v1/meta");
    assert.ok(meta.columns.some((c) => c.name === "assay") && meta.columns.some((c) => c.name === "note"), "the store has both columns");
    const page = await open("?genes=CD3E&by=cell_type&plot=dot");
    await settled(page);
    for (const c of ["assay", "note"]) {
      assert.equal(await page.locator(`.sec[data-column="${c}"]`).count(), 0, `no filter for ${c}`);
      assert.equal(await page.locator(`#by-1 option[value="${c}"]`).count(), 0, `no split by ${c}`);
    }
    for (const c of ["disease", "sex", "donor"]) assert.equal(await page.locator(`.sec[data-column="${c}"]`).count(), 1, c);
    assert.deepEqual(page.errors, []);
  });
});
