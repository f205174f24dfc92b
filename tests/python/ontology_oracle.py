"""An independent reading of docs/ONTOLOGY.md, for tests/python/test_ontology.py.

Written from the document's text, not from cellcube's code. It reads the same term maps
(cellxgene-ontology-guide's `ontology-assets/*.json[.gz|.zst]`, decompressed here with
zstandard or gzip after looking at the content) and answers:

- matching (docs "What is matched"): an id, a live label, a synonym of exactly one live
  term that is no term's label, a deprecated id whose replaced_by is live; ASCII
  case-insensitive on the whole value; NA never;
- binding (docs "Which columns are backed"): a CELLxGENE pair's ids decide; otherwise at
  least half (and at least 2) of the distinct non-NA values must match, the ontology
  matching the most wins, the first given on a tie;
- the embedded terms: the terms used and every ancestor from their ancestor maps;
- roll-up rows (docs "Roll-up"): the terms holding selected cells and their ancestors,
  each row the set of cells whose term is it or a descendant (by the ancestor maps),
  pruned when a descendant holds exactly the same cells, in depth-first pre-order with
  children sorted by (label case-insensitively, id), a term with several shown parents
  under the last of them visited, depth 0 without shown parent, else 1 + the largest
  depth of its shown parents (its nearest shown ancestors);
- DE sides with roll-up (docs "DE and markers").

Cells are modelled as one array per column of *keys*: `("term", id)`, `("plain",
value)` or `None` (NA).
"""

from __future__ import annotations

import gzip
import io
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def fold(s: str) -> str:
    """ASCII case folding (docs: case-insensitively (ASCII))."""
    return s.translate(_ASCII_LOWER)


def read_term_map_json(path) -> dict:
    """The JSON object of a term map, plain, gzip or zstd: the content decides."""
    data = Path(path).read_bytes()
    if data[:4] == b"\x28\xb5\x2f\xfd":
        import zstandard

        data = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()
    elif data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return json.loads(data)


_VERSION = re.compile(r"^[A-Za-z]+-ontology-(v[0-9][0-9-]*[0-9])\.json(\.gz|\.zst)?$")


class TermMap:
    """One ontology's term map, and the matching of docs/ONTOLOGY.md."""

    def __init__(self, path):
        self.path = Path(path)
        raw = read_term_map_json(self.path)
        self.terms = {}
        for tid, t in raw.items():
            self.terms[tid] = {
                "label": t.get("label", ""),
                "ancestors": dict(t.get("ancestors") or {}),
                "synonyms": list(t.get("synonyms") or []),
                "deprecated": bool(t.get("deprecated", False)),
                "replaced_by": t.get("replaced_by"),
            }
        prefixes = Counter(tid.split(":", 1)[0] for tid in self.terms)
        self.name = prefixes.most_common(1)[0][0]
        m = _VERSION.match(self.path.name)
        self.version = m.group(1) if m else ""
        self.live = {tid for tid, t in self.terms.items() if not t["deprecated"]}
        # 1. ids (live)
        self._ids = {fold(tid): tid for tid in self.live}
        # 2. live labels
        self._labels = {}
        for tid in sorted(self.live):
            self._labels.setdefault(fold(self.terms[tid]["label"]), set()).add(tid)
        # every term's label (deprecated ones too) can veto a synonym
        self._any_label = {fold(t["label"]) for t in self.terms.values() if t["label"]}
        # 3. synonyms of exactly one live term, and no term's label
        owners = {}
        for tid in self.live:
            for s in set(fold(x) for x in self.terms[tid]["synonyms"]):
                owners.setdefault(s, set()).add(tid)
        self._synonyms = {s: next(iter(o)) for s, o in owners.items()
                          if len(o) == 1 and s not in self._any_label}
        self.ambiguous_synonyms = {s for s, o in owners.items() if len(o) > 1}
        self.label_synonyms = {s for s in owners if s in self._any_label}
        # 4. deprecated ids with a live replaced_by
        self._replaced = {}
        for tid, t in self.terms.items():
            r = t["replaced_by"]
            if t["deprecated"] and r in self.live:
                self._replaced[fold(tid)] = r

    def match(self, value):
        """(term id, how) for a value, how in id/label/synonym/replaced; None if nothing."""
        if value is None:
            return None
        v = fold(value)
        if v in self._ids:
            return self._ids[v], "id"
        if v in self._labels:
            ids = self._labels[v]
            if len(ids) == 1:
                return next(iter(ids)), "label"
            return None  # two live terms with one label: nothing to choose (not in fixtures)
        if v in self._synonyms:
            return self._synonyms[v], "synonym"
        if v in self._replaced:
            return self._replaced[v], "replaced"
        return None

    def label(self, tid):
        return self.terms[tid]["label"]

    def ancestors(self, tid):
        return self.terms[tid]["ancestors"]

    def id_of_label(self, label):
        """The live term with this exact label (test convenience)."""
        ids = [t for t in self.live if self.terms[t]["label"] == label]
        assert len(ids) == 1, f"test bug: {label!r} is the label of {ids}"
        return ids[0]


# --------------------------------------------------------------------------
# binding columns
# --------------------------------------------------------------------------


def bind_column(term_maps, values_per_dataset, ids_per_dataset=None):
    """The TermMap a column binds to, or None.

    values_per_dataset: one list of values (None = NA) per dataset of the build.
    ids_per_dataset: for a CELLxGENE pair, the `COL_ontology_term_id` values of the
    datasets that have it (None for a dataset without).
    """
    ids_per_dataset = ids_per_dataset or [None] * len(values_per_dataset)
    if any(ids is not None for ids in ids_per_dataset):
        counts = Counter()
        for ids in ids_per_dataset:
            for tid in ids or []:
                if tid is None:
                    continue
                for k, tm in enumerate(term_maps):
                    if tid in tm.terms:
                        counts[k] += 1
        if not counts:
            return None
        best = max(counts.values())
        return term_maps[min(k for k, c in counts.items() if c == best)]
    distinct = {v for vals in values_per_dataset for v in vals if v is not None}
    best, best_n = None, 0
    for tm in term_maps:
        n = sum(1 for v in distinct if tm.match(v) is not None)
        if n >= 2 and 2 * n >= len(distinct) and n > best_n:
            best, best_n = tm, n
    return best


def keys_of(term_map, values, ids=None):
    """Per cell: ("term", id), ("plain", value) or None (NA). With `ids` (a CELLxGENE
    pair) a value's term is the term of its id."""
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        if v is None:
            out[i] = None
            continue
        m = None
        if term_map is not None:
            if ids is not None and ids[i] is not None:
                tid = ids[i]
                if tid in term_map.live:
                    m = (tid, "pair")
                else:
                    m = term_map.match(tid)
            else:
                m = term_map.match(v)
        out[i] = ("term", m[0]) if m else ("plain", v)
    return out


# --------------------------------------------------------------------------
# the embedded terms and their tree
# --------------------------------------------------------------------------


def embedded_terms(term_map, used_ids):
    """The used terms and every ancestor of theirs (ids)."""
    out = set()
    for tid in used_ids:
        out.add(tid)
        out.update(term_map.ancestors(tid))
    return out


def nearest(term_map, tid, among):
    """The nearest ancestors of `tid` among the set `among`: those ancestors in `among`
    that are no ancestor of another ancestor of `tid` in `among` (by the ancestor maps)."""
    cands = [a for a in term_map.ancestors(tid) if a in among]
    return sorted(a for a in cands
                  if not any(a in term_map.ancestors(b) for b in cands if b != a))


def is_in_subtree(term_map, tid, root):
    return tid == root or root in term_map.ancestors(tid)


class RollRow:
    def __init__(self, kind, value, mask, term_map=None):
        self.kind = kind  # "term", "plain" or "na"
        self.value = value  # term id, plain value, or None
        self.mask = mask  # cells of the selection in this row (bool over all cells)
        self.label = term_map.label(value) if kind == "term" else ("NA" if kind == "na" else value)
        self.depth = 0
        self.parents = []

    def __repr__(self):
        return f"<{self.kind} {self.label!r} d={self.depth} n={int(self.mask.sum())}>"


def rollup_rows(term_map, keys, selected, plain_order=None):
    """The rows of `--by COL --rollup COL` over the selected cells.

    keys: per cell ("term", id) | ("plain", v) | None; selected: bool per cell.
    plain_order: the presentation order of plain values (the store's categories);
    NA last. Returns [RollRow] in output order (rows without cells left out)."""
    n = len(keys)
    sel = np.asarray(selected, dtype=bool)
    terms_of = np.array([k[1] if (k is not None and k[0] == "term") else None for k in keys],
                        dtype=object)
    used = sorted({t for t, s in zip(terms_of, sel) if s and t is not None})
    candidates = set(used)
    for t in used:
        candidates.update(term_map.ancestors(t))
    # cells of each candidate: selected cells whose term is it or a descendant
    by_term = {}
    for i in np.flatnonzero(sel):
        if terms_of[i] is not None:
            by_term.setdefault(terms_of[i], []).append(i)
    cells = {c: np.zeros(n, dtype=bool) for c in candidates}
    for t, idx in by_term.items():
        for c in [t, *term_map.ancestors(t)]:
            cells[c][idx] = True
    count = {c: int(m.sum()) for c, m in cells.items()}
    shown = set()
    for c in candidates:
        pruned = any(c in term_map.ancestors(d) and count[d] == count[c]
                     and np.array_equal(cells[d], cells[c])
                     for d in candidates if d != c)
        if not pruned:
            shown.add(c)
    parents = {s: nearest(term_map, s, shown) for s in shown}
    depth = {}

    def depth_of(s):
        if s not in depth:
            depth[s] = 0 if not parents[s] else 1 + max(depth_of(p) for p in parents[s])
        return depth[s]

    def sort_key(t):
        return (fold(term_map.label(t)), t)

    children = {s: [] for s in shown}
    for s in shown:
        for p in parents[s]:
            children[p].append(s)
    order, emitted = [], set()

    def visit(s):
        order.append(s)
        emitted.add(s)
        for c in sorted(children[s], key=sort_key):
            if c not in emitted and all(p in emitted for p in parents[c]):
                visit(c)

    for top in sorted((s for s in shown if not parents[s]), key=sort_key):
        visit(top)
    assert len(order) == len(shown), "oracle bug: a shown term was never visited"
    rows = []
    for s in order:
        r = RollRow("term", s, cells[s], term_map)
        r.depth = depth_of(s)
        r.parents = parents[s]
        rows.append(r)
    plains = {k[1] for k, s in zip(keys, sel) if s and k is not None and k[0] == "plain"}
    order_p = [v for v in (plain_order or []) if v in plains]
    order_p += sorted(plains - set(order_p))
    for v in order_p:
        rows.append(RollRow("plain", v, sel & np.array([k == ("plain", v) for k in keys])))
    na = sel & np.array([k is None for k in keys])
    if na.any():
        rows.append(RollRow("na", None, na))
    return rows


def select(term_map, keys, value, rollup):
    """The cells `--where COL=value` selects: value is a term id, a plain value or None
    (NA); with roll-up a term means its subtree."""
    if value is None:
        return np.array([k is None for k in keys])
    if isinstance(value, tuple) and value[0] == "plain":
        return np.array([k == value for k in keys])
    tid = value
    if not rollup:
        return np.array([k == ("term", tid) for k in keys])
    return np.array([k is not None and k[0] == "term" and is_in_subtree(term_map, k[1], tid)
                     for k in keys])


def de_sides(term_map, keys, population, group1, group2=None):
    """Side 1 and side 2 of `de --rollup COL --compare COL --group1 T... [--group2 G...]`.

    group1/group2: a list (or one) of keys as `select` takes them (term ids, ("plain", v),
    None for NA). Side 1 = the union of the group1 terms' subtrees (and plain values);
    rest = the population less side 1 and less the cells labelled with a strict ancestor
    of a group1 term (plain values and NA stay)."""
    pop = np.asarray(population, dtype=bool)
    g1 = group1 if isinstance(group1, list) else [group1]
    side1 = np.zeros(len(keys), dtype=bool)
    for g in g1:
        side1 |= select(term_map, keys, g, rollup=True)
    side1 &= pop
    if group2 is not None:
        g2 = group2 if isinstance(group2, list) else [group2]
        side2 = np.zeros(len(keys), dtype=bool)
        for g in g2:
            side2 |= select(term_map, keys, g, rollup=True)
        return side1, pop & side2
    strict_anc = set()
    for g in g1:
        if isinstance(g, str):
            strict_anc.update(term_map.ancestors(g))
    above = np.array([k is not None and k[0] == "term" and k[1] in strict_anc for k in keys])
    return side1, pop & ~side1 & ~above
