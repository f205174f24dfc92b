// Downloads: the table behind the plot (the server's own CSV for the same query), and
// the figure as one self-contained SVG (chart + legend + a caption line) or as a PNG
// rasterised from that SVG on a canvas at twice the screen resolution.

import { FONT_FAMILY, wrapText } from "./plots.js";

const CAPTION_FONT = `13px ${FONT_FAMILY}`;

const SVGNS = "http://www.w3.org/2000/svg";

export function saveBlob(blob, filename) {
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

// The legend goes right of the chart, or under it when it says data-place="below".
export function composeFigure(chart, legend, caption) {
  const cw = +chart.getAttribute("width"), ch = +chart.getAttribute("height");
  const lw = legend ? +legend.getAttribute("width") : 0, lh = legend ? +legend.getAttribute("height") : 0;
  const below = legend?.getAttribute("data-place") === "below";
  const pad = 12;
  const width = Math.ceil(pad + (below ? Math.max(cw, lw) : cw + (legend ? 16 + lw : 0)) + pad);
  // The caption wraps to the figure's width: filters and datasets can make it long.
  const lines = caption ? wrapText(caption, width - 2 * pad, CAPTION_FONT) : [];
  const top = lines.length ? 12 + 18 * lines.length : 8;
  const height = Math.ceil(top + (below ? ch + lh : Math.max(ch, lh)) + pad);
  const root = document.createElementNS(SVGNS, "svg");
  root.setAttribute("xmlns", SVGNS);
  root.setAttribute("width", width);
  root.setAttribute("height", height);
  root.setAttribute("viewBox", `0 0 ${width} ${height}`);
  root.setAttribute("font-family", FONT_FAMILY);
  const bg = document.createElementNS(SVGNS, "rect");
  bg.setAttribute("width", width);
  bg.setAttribute("height", height);
  bg.setAttribute("fill", "white");
  root.append(bg);
  lines.forEach((line, i) => {
    const t = document.createElementNS(SVGNS, "text");
    t.setAttribute("x", pad);
    t.setAttribute("y", 20 + 18 * i);
    t.setAttribute("font-size", 13);
    t.setAttribute("fill", "#1f2430");
    t.setAttribute("class", "caption");
    t.textContent = line;
    root.append(t);
  });
  const c = chart.cloneNode(true);
  c.setAttribute("x", pad);
  c.setAttribute("y", top);
  c.removeAttribute("style");
  c.setAttribute("overflow", "visible");
  root.append(c);
  if (legend) {
    const l = legend.cloneNode(true);
    l.setAttribute("x", below ? pad : pad + cw + 16);
    l.setAttribute("y", below ? top + ch : top);
    root.append(l);
  }
  return root;
}

export function svgString(node) {
  return '<?xml version="1.0" encoding="UTF-8"?>\n' + new XMLSerializer().serializeToString(node);
}

export function svgToPng(svgText, width, height, scale = 2) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    const url = URL.createObjectURL(new Blob([svgText], { type: "image/svg+xml;charset=utf-8" }));
    img.onload = () => {
      const canvas = document.createElement("canvas");
      canvas.width = Math.ceil(width * scale);
      canvas.height = Math.ceil(height * scale);
      const g = canvas.getContext("2d");
      g.fillStyle = "white";
      g.fillRect(0, 0, canvas.width, canvas.height);
      g.scale(scale, scale);
      g.drawImage(img, 0, 0, width, height);
      URL.revokeObjectURL(url);
      canvas.toBlob((b) => (b ? resolve(b) : reject(new Error("the browser could not encode the PNG"))), "image/png");
    };
    img.onerror = () => {
      URL.revokeObjectURL(url);
      reject(new Error("the browser could not rasterise the SVG"));
    };
    img.src = url;
  });
}
