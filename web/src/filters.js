// The left panel: the dataset picker and one filter per column, each value with its
// cell count. Counts come from /api/v1/counts, which applies every other filter, so
// a count says how many cells that choice would add to the current selection.
// Nothing ticked in a section means no filter on that column.

import { compareLabels, el, fmtCount, fmtInt } from "./format.js";
import { whereValues } from "./state.js";

const SHOW = 8;

export const prettyColumn = (name) => name.replace(/_/g, " ");

// The values the current selection has cells of first, each part in label order: with
// one dataset ticked, its own cell types lead and the others' (count 0) follow, instead
// of hiding the relevant ones behind "Show all".
export function withCellsFirst(values) {
  return [...values.filter((v) => v.n > 0), ...values.filter((v) => !(v.n > 0))];
}

// The columns worth a filter and a split: those with at least two values holding cells
// (NA counts as a value). A column whose cells all share one value, or are all NA,
// cannot change a selection, so the sidebar and the Split-by menus leave it out.
export function usefulColumns(meta) {
  return meta.columns.filter((c) => c.name === "dataset" || c.values.filter((v) => v.n_cells > 0).length >= 2);
}

// The groups an ontology-backed column offers: each term above at least two of its
// values' terms (from /api/v1/meta's term tree), with those values. Ancestors follow the
// parents transitively.
export function subtypeGroups(meta, name) {
  const column = meta.columns.find((c) => c.name === name);
  if (!column?.ontology || !meta.terms?.length) return [];
  const terms = new Map(meta.terms.map((t) => [t.id, t]));
  const ancestors = (id) => {
    const seen = new Set(), todo = [...(terms.get(id)?.parents ?? [])];
    while (todo.length) {
      const p = todo.pop();
      if (seen.has(p)) continue;
      seen.add(p);
      todo.push(...(terms.get(p)?.parents ?? []));
    }
    return seen;
  };
  const under = new Map();
  for (const v of column.values) {
    if (!v.term_id) continue;
    for (const a of ancestors(v.term_id)) {
      if (!under.has(a)) under.set(a, []);
      under.get(a).push(String(v.value));
    }
  }
  // A group holding every valued cell of the column selects what no filter selects.
  const valued = column.values.filter((v) => v.value !== "NA").length;
  return [...under].filter(([, vs]) => vs.length >= 2 && vs.length < valued).map(([id, vs]) => ({ id, label: terms.get(id).label, values: vs }));
}

export class FilterPanel {
  constructor(root, meta, { onFilter, onDatasets }) {
    this.root = root;
    this.meta = meta;
    this.onFilter = onFilter;
    this.onDatasets = onDatasets;
    this.ui = new Map();
    this.sections = new Map();
    const columns = usefulColumns(meta).filter((c) => c.name !== "dataset");
    this.order = ["dataset", ...columns.map((c) => c.name)];
    root.replaceChildren(
      el("div", { class: "side-head" }, el("span", {}, "Filters"), el("button", { class: "link", type: "button", id: "clear-filters", onclick: () => this.clearAll() }, "Clear all")),
      ...this.order.map((name) => this.section(name)));
  }

  values(name) {
    if (name === "dataset") return this.meta.datasets.map((d) => ({ value: d.name, n_cells: d.n_cells }));
    const values = this.meta.columns.find((c) => c.name === name)?.values ?? [];
    return [...values].sort((a, b) => compareLabels(String(a.value), String(b.value)));
  }

  section(name) {
    const values = this.values(name);
    const ui = { open: values.length <= 40, all: false, q: "" };
    this.ui.set(name, ui);
    const summary = el("span", { class: "sec-summary" });
    const clear = el("button", { class: "link sec-clear", type: "button", hidden: true, onclick: (e) => { e.stopPropagation(); this.emit(name, []); } }, "clear");
    const head = el("button", { class: "sec-head", type: "button", "aria-expanded": String(ui.open), onclick: () => this.toggle(name) },
      el("span", { class: "sec-caret" }, "▸"), el("span", { class: "sec-name" }, name === "dataset" ? "Datasets" : prettyColumn(name)), summary);
    const search = values.length > 10
      ? el("input", { class: "sec-search", type: "search", placeholder: `Find a ${prettyColumn(name)}…`, oninput: (e) => { ui.q = e.target.value.toLowerCase(); this.renderList(name); } })
      : null;
    const list = el("ul", { class: "sec-list" });
    const more = el("button", { class: "link sec-more", type: "button", onclick: () => { ui.all = !ui.all; this.renderList(name); } });
    const body = el("div", { class: "sec-body", hidden: !ui.open }, search, list, more);
    const node = el("section", { class: `sec${ui.open ? " open" : ""}`, dataset: { column: name } }, el("div", { class: "sec-top" }, head, clear), body);
    this.sections.set(name, { node, head, body, list, more, summary, clear });
    return node;
  }

  toggle(name) {
    const ui = this.ui.get(name), s = this.sections.get(name);
    ui.open = !ui.open;
    s.body.hidden = !ui.open;
    s.node.classList.toggle("open", ui.open);
    s.head.setAttribute("aria-expanded", String(ui.open));
  }

  selected(name) {
    return name === "dataset" ? this.state.datasets : whereValues(this.state, name);
  }

  emit(name, values, options = {}) {
    if (name === "dataset") this.onDatasets(values);
    else this.onFilter(name, values, options);
  }

  clearAll() {
    this.onFilter(null, []);
  }

  // counts: a /counts answer; left out, the last one stays.
  update(state, counts) {
    this.state = state;
    if (counts || !this.counts) {
      this.counts = new Map();
      for (const c of counts?.columns ?? this.meta.columns) this.counts.set(c.name, new Map(c.values.map((v) => [String(v.value), v.n_cells])));
    }
    for (const name of this.order) this.renderList(name);
  }

  renderList(name) {
    const s = this.sections.get(name), ui = this.ui.get(name);
    if (!this.state) return;
    const sel = new Set(this.selected(name));
    const counts = this.counts.get(name) ?? new Map();
    const values = withCellsFirst(this.values(name).map((v) => ({ value: String(v.value), n: counts.has(String(v.value)) ? counts.get(String(v.value)) : counts.size ? 0 : v.n_cells })));
    const max = Math.max(1, ...values.map((v) => v.n));
    let shown = ui.q ? values.filter((v) => v.value.toLowerCase().includes(ui.q)) : values;
    const hidden = !ui.q && !ui.all && shown.length > SHOW + 2;
    if (hidden) shown = shown.filter((v, i) => i < SHOW || sel.has(v.value));
    s.list.replaceChildren(...shown.map((v) => this.item(name, v, sel, max)));
    // An ontology-backed column also offers its terms' subtrees (docs/ONTOLOGY.md).
    const groups = subtypeGroups(this.meta, name)
      .map((g) => ({ ...g, n: g.values.reduce((t, v) => t + (values.find((x) => x.value === v)?.n ?? 0), 0) }))
      .filter((g) => !ui.q || g.label.toLowerCase().includes(ui.q))
      .sort((a, b) => b.n - a.n || compareLabels(a.label, b.label));
    const rolled = (this.state.rollup || []).includes(name);
    const groupsShown = groups.filter((g, i) => ui.all || i < SHOW || (rolled && sel.has(g.label)));
    if (groupsShown.length) {
      s.list.append(el("li", { class: "sec-groups" }, "Groups, with their subtypes"),
        ...groupsShown.map((g) => this.groupItem(name, g, rolled && sel.has(g.label), max)));
    }
    if (ui.q && !shown.length) s.list.append(el("li", { class: "sec-none" }, "No value matches."));
    s.more.hidden = ui.q || values.length <= SHOW + 2;
    s.more.textContent = ui.all ? "Show fewer" : `Show all ${values.length}`;
    s.summary.textContent = sel.size ? `${sel.size} of ${values.length}` : `${values.length}`;
    s.summary.classList.toggle("active", sel.size > 0);
    s.clear.hidden = sel.size === 0;
  }

  // "T cell (and subtypes)": ticking it selects the term's subtree (a roll-up of the column).
  groupItem(name, g, checked, max) {
    const box = el("input", {
      type: "checkbox", checked,
      onchange: () => {
        const now = this.selected(name);
        this.emit(name, checked ? now.filter((x) => x !== g.label) : [...now, g.label], { rollup: !checked });
      },
    });
    return el("li", { class: `val group${checked ? " checked" : ""}${g.n === 0 ? " zero" : ""}`, dataset: { value: g.label, term: g.id } },
      el("label", { title: `${g.label} and its subtypes (${g.id}): ${fmtInt(g.n)} cells` }, box,
        el("span", { class: "val-name" }, `${g.label} (and subtypes)`),
        el("span", { class: "val-count" }, fmtCount(g.n)),
        el("span", { class: "val-bar", style: `width:${(100 * g.n) / max}%` })));
  }

  item(name, v, sel, max) {
    const checked = sel.has(v.value);
    const box = el("input", {
      type: "checkbox", checked,
      onchange: () => {
        const now = this.selected(name);
        this.emit(name, checked ? now.filter((x) => x !== v.value) : [...now, v.value]);
      },
    });
    const label = v.value === "NA" ? el("span", { class: "val-name val-na", title: "missing value" }, "NA") : el("span", { class: "val-name", title: v.value }, v.value);
    return el("li", { class: `val${checked ? " checked" : ""}${v.n === 0 ? " zero" : ""}`, dataset: { value: v.value } },
      el("label", { title: `${v.value}: ${fmtInt(v.n)} cells` }, box, label,
        el("span", { class: "val-count" }, fmtCount(v.n)),
        el("span", { class: "val-bar", style: `width:${(100 * v.n) / max}%` })));
  }
}
