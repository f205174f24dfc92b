// Number and text formatting shared by the plots, tooltips and panels.
import { format } from "d3";

const int = format(",d");
const sig = format(".3~r");
const fixed1 = format(",.1f");

export const fmtInt = (x) => (x == null ? "—" : int(x));
export const fmtPct = (x) => (x == null ? "—" : `${(100 * x).toFixed(x >= 0.1 || x === 0 ? 0 : 1)}%`);

export function fmtNum(x) {
  if (x == null || Number.isNaN(x)) return "—";
  if (x === 0) return "0";
  const a = Math.abs(x);
  if (a >= 1000) return fixed1(x);
  if (a < 0.001) return x.toExponential(1);
  return sig(x);
}

// Compact counts for the filter panel: 950, 12.4k, 1.2M.
export function fmtCount(x) {
  if (x < 1000) return String(x);
  if (x < 1e6) return `${(x / 1e3).toFixed(x < 1e4 ? 1 : 0)}k`;
  return `${(x / 1e6).toFixed(x < 1e7 ? 1 : 0)}M`;
}

export const collator = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" });

// Natural order with the missing-value label last.
export function compareLabels(a, b) {
  if (a === b) return 0;
  if (a === "NA") return 1;
  if (b === "NA") return -1;
  return collator.compare(a, b);
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k in node && typeof v !== "string") node[k] = v;
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c != null && c !== false) node.append(c instanceof Node ? c : String(c));
  return node;
}
