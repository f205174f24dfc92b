// The gene box: chips for the chosen genes, a text field with autocomplete from
// /api/v1/genes. Enter adds the highlighted suggestion or the typed gene, comma and
// space add too (so a pasted list works), Backspace in an empty field removes the last
// chip, arrows move through the suggestions, Escape closes them.

import { el } from "./format.js";

export class GeneInput {
  constructor(root, { onChange, suggest }) {
    this.root = root;
    this.onChange = onChange;
    this.suggest = suggest;
    this.genes = [];
    this.unknown = new Set();
    this.items = [];
    this.active = -1;
    this.timer = 0;
    this.controller = null;

    this.input = el("input", {
      id: "gene-input", type: "text", placeholder: "Type a gene, e.g. CD3E…", autocomplete: "off",
      spellcheck: false, "aria-label": "Add a gene", role: "combobox", "aria-autocomplete": "list",
      "aria-controls": "gene-suggestions", "aria-expanded": "false",
    });
    this.list = el("ul", { id: "gene-suggestions", class: "suggestions", role: "listbox", hidden: true });
    this.chips = el("div", { class: "chips" });
    root.append(this.chips, this.input, this.list);
    root.addEventListener("mousedown", (e) => {
      if (e.target === root || e.target === this.chips) { e.preventDefault(); this.input.focus(); }
    });
    this.input.addEventListener("keydown", (e) => this.keydown(e));
    this.input.addEventListener("input", () => this.typed());
    this.input.addEventListener("blur", () => setTimeout(() => this.close(), 120));
    this.input.addEventListener("focus", () => this.input.value && this.typed());
  }

  set(genes, unknown = new Set()) {
    this.genes = [...genes];
    this.unknown = unknown;
    this.chips.replaceChildren(
      ...this.genes.map((g, i) =>
        el("span", { class: `chip${unknown.has(g.toLowerCase()) ? " chip-bad" : ""}`, title: unknown.has(g.toLowerCase()) ? `${g} is not in this store` : g },
          el("span", { class: "chip-label" }, g),
          el("button", { class: "chip-x", type: "button", "aria-label": `Remove ${g}`, onclick: () => this.remove(i) }, "×"))));
    this.input.placeholder = genes.length ? "Add a gene…" : "Type a gene, e.g. CD3E…";
  }

  add(names) {
    const have = new Set(this.genes.map((g) => g.toLowerCase()));
    const fresh = names.map((n) => n.trim()).filter((n) => n && !have.has(n.toLowerCase()) && have.add(n.toLowerCase()));
    this.input.value = "";
    this.close();
    if (fresh.length) this.onChange([...this.genes, ...fresh]);
  }

  remove(i) {
    this.onChange(this.genes.filter((_, k) => k !== i));
  }

  replace(oldName, newName) {
    const have = this.genes.some((g) => g.toLowerCase() === newName.toLowerCase());
    const next = have
      ? this.genes.filter((g) => g.toLowerCase() !== oldName.toLowerCase())
      : this.genes.map((g) => (g.toLowerCase() === oldName.toLowerCase() ? newName : g));
    this.onChange(next);
  }

  keydown(e) {
    const text = this.input.value;
    if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      if (!this.items.length) return;
      e.preventDefault();
      const n = this.items.length;
      this.highlight(e.key === "ArrowDown" ? (this.active + 1) % n : (this.active - 1 + n) % n);
    } else if (e.key === "Enter" || e.key === "Tab") {
      if (e.key === "Tab" && !text) return;
      e.preventDefault();
      if (this.active >= 0 && this.items[this.active]) this.add([this.items[this.active].symbol || this.items[this.active].id]);
      else if (text.trim()) this.add(text.split(/[\s,;]+/));
    } else if (e.key === "Escape") {
      this.close();
    } else if (e.key === "Backspace" && !text && this.genes.length) {
      e.preventDefault();
      this.remove(this.genes.length - 1);
    } else if ((e.key === "," || e.key === " " || e.key === ";") && text.trim()) {
      e.preventDefault();
      this.add(text.split(/[\s,;]+/));
    }
  }

  typed() {
    const text = this.input.value;
    // A pasted list: add every complete name, keep the last fragment for completion.
    if (/[\s,;]/.test(text.trim())) {
      const parts = text.split(/[\s,;]+/);
      const last = /[\s,;]$/.test(text) ? "" : parts.pop();
      this.add(parts);
      this.input.value = last;
    }
    const q = this.input.value.trim();
    clearTimeout(this.timer);
    if (!q) return this.close();
    this.timer = setTimeout(() => this.fetch(q), 70);
  }

  async fetch(q) {
    this.controller?.abort();
    this.controller = new AbortController();
    try {
      const genes = await this.suggest(q, this.controller.signal);
      if (this.input.value.trim() !== q) return;
      const have = new Set(this.genes.map((g) => g.toLowerCase()));
      this.items = genes.filter((g) => !have.has((g.symbol || g.id).toLowerCase()));
      this.render(q);
    } catch (e) {
      if (e.name !== "AbortError") this.close();
    }
  }

  render(q) {
    if (!this.items.length) {
      this.list.replaceChildren(el("li", { class: "suggestion-empty" }, `No gene starts with “${q}”. Enter adds it anyway.`));
      this.list.hidden = false;
      this.active = -1;
      return;
    }
    this.list.replaceChildren(
      ...this.items.map((g, i) => {
        const sym = g.symbol || g.id;
        return el("li", {
          class: "suggestion", role: "option", id: `gene-opt-${i}`,
          onmousedown: (e) => { e.preventDefault(); this.add([sym]); },
          onmousemove: () => this.highlight(i),
        }, el("span", { class: "sugg-sym" }, el("b", {}, sym.slice(0, q.length)), sym.slice(q.length)),
        g.symbol && g.id !== g.symbol ? el("span", { class: "sugg-id" }, g.id) : null);
      }));
    this.list.hidden = false;
    this.input.setAttribute("aria-expanded", "true");
    this.highlight(this.items.length && (this.items[0].symbol || this.items[0].id).toLowerCase() === q.toLowerCase() ? 0 : -1);
  }

  highlight(i) {
    this.active = i;
    [...this.list.children].forEach((li, k) => li.classList.toggle("active", k === i));
    if (i >= 0) this.list.children[i]?.scrollIntoView({ block: "nearest" });
  }

  close() {
    this.items = [];
    this.active = -1;
    this.list.hidden = true;
    this.input.setAttribute("aria-expanded", "false");
  }
}
