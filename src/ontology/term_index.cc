#include "ontology/term_index.h"

#include <algorithm>
#include <numeric>

#include "util/text.h"

namespace cellcube::ontology {
namespace {

std::string Key(int32_t ontology, std::string_view value, bool lower) {
  std::string key = std::to_string(ontology);
  key.push_back('\x1f');
  for (char c : value) key.push_back(lower ? AsciiLower(c) : c);
  return key;
}

}  // namespace

TermIndex::TermIndex(const StoreOntologies& terms) : terms_(&terms) {
  const auto n = static_cast<size_t>(terms.n_terms());
  std::vector<std::string> folded(n);
  for (int32_t t = 0; t < terms.n_terms(); ++t) {
    const auto i = static_cast<size_t>(t);
    const int32_t o = terms.term_ontology[i];
    by_key_.emplace(Key(o, terms.term_ids[i], true), t);
    by_key_.emplace(Key(o, terms.term_labels[i], true), t);
    by_label_.emplace(Key(o, terms.term_labels[i], false), t);
    folded[i] = Key(0, terms.term_labels[i], true);
  }
  // The order siblings are shown in: label case-insensitively, then id (ids ascend).
  std::vector<int32_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    return folded[static_cast<size_t>(a)] < folded[static_cast<size_t>(b)];
  });
  rank_.resize(n);
  for (size_t r = 0; r < n; ++r) rank_[static_cast<size_t>(order[r])] = static_cast<int32_t>(r);
}

int32_t TermIndex::Find(int32_t ontology, std::string_view value) const {
  auto it = by_key_.find(Key(ontology, value, true));
  return it == by_key_.end() ? -1 : it->second;
}

int32_t TermIndex::FindLabel(int32_t ontology, std::string_view label) const {
  auto it = by_label_.find(Key(ontology, label, false));
  return it == by_label_.end() ? -1 : it->second;
}

bool TermIndex::InSubtree(int32_t term, int32_t root) const {
  if (term == root) return true;
  const auto& o = *terms_;
  const auto begin = o.ancestors.begin() + o.ancestor_begin[static_cast<size_t>(term)];
  const auto end = o.ancestors.begin() + o.ancestor_begin[static_cast<size_t>(term) + 1];
  return std::binary_search(begin, end, root);
}

std::vector<int32_t> TermIndex::Parents(int32_t term) const {
  const auto& o = *terms_;
  std::vector<int32_t> out;
  const int64_t b = o.ancestor_begin[static_cast<size_t>(term)];
  const int64_t e = o.ancestor_begin[static_cast<size_t>(term) + 1];
  for (int64_t i = b; i < e; ++i) {
    const int32_t a = o.ancestors[static_cast<size_t>(i)];
    bool nearest = true;
    for (int64_t j = b; j < e && nearest; ++j)
      nearest = !(j != i && InSubtree(o.ancestors[static_cast<size_t>(j)], a));
    if (nearest) out.push_back(a);
  }
  return out;
}

// Works on the candidates only (the terms holding cells and their ancestors, a few dozen
// to a few hundred), each known by its place in `cand` (ascending term numbers).
TermIndex::Shown TermIndex::Rows(const std::vector<std::pair<int32_t, int64_t>>& own) const {
  const auto& o = *terms_;
  auto anc_begin = [&](int32_t t) { return o.ancestor_begin[static_cast<size_t>(t)]; };
  auto anc_end = [&](int32_t t) { return o.ancestor_begin[static_cast<size_t>(t) + 1]; };
  auto anc = [&](int64_t k) { return o.ancestors[static_cast<size_t>(k)]; };
  std::vector<int32_t> cand;
  for (const auto& [t, n] : own) {
    if (n <= 0) continue;
    cand.push_back(t);
    for (int64_t k = anc_begin(t); k < anc_end(t); ++k) cand.push_back(anc(k));
  }
  std::sort(cand.begin(), cand.end());
  cand.erase(std::unique(cand.begin(), cand.end()), cand.end());
  // A candidate's place by term number: one dense table (a few KB), filled for the
  // candidates only.
  std::vector<int32_t> place_of(static_cast<size_t>(o.n_terms()), -1);
  for (size_t c = 0; c < cand.size(); ++c)
    place_of[static_cast<size_t>(cand[c])] = static_cast<int32_t>(c);
  // (A map that is not transitive may list an ancestor of an ancestor that is no
  // candidate: it is passed over, never indexed with -1.)
  auto place = [&](int32_t t) { return static_cast<size_t>(place_of[static_cast<size_t>(t)]); };
  auto known = [&](int32_t t) { return place_of[static_cast<size_t>(t)] >= 0; };
  // Each term's subtree cells: a term's own cells count in it and once in each ancestor
  // (the map lists each ancestor once, however many paths lead there).
  std::vector<int64_t> cells(cand.size(), 0);
  for (const auto& [t, n] : own) {
    if (n <= 0) continue;
    cells[place(t)] += n;
    for (int64_t k = anc_begin(t); k < anc_end(t); ++k) cells[place(anc(k))] += n;
  }
  // A term whose descendant holds exactly its cells says nothing that descendant does not.
  std::vector<uint8_t> shown(cand.size(), 1);
  for (size_t c = 0; c < cand.size(); ++c)
    for (int64_t k = anc_begin(cand[c]); k < anc_end(cand[c]); ++k) {
      if (!known(anc(k))) continue;
      const size_t a = place(anc(k));
      if (cells[a] == cells[c]) shown[a] = 0;
    }
  // Shown parents: the nearest shown ancestors (no shown ancestor lies between). Edges
  // (parent place, child) sorted by the parent, then the child's sibling order.
  std::vector<std::pair<size_t, int32_t>> edges;
  std::vector<int32_t> waiting(cand.size(), 0), up;
  std::vector<uint8_t> in_up(cand.size(), 0), covered(cand.size(), 0);
  std::vector<int32_t> tops;
  for (size_t c = 0; c < cand.size(); ++c) {
    if (!shown[c]) continue;
    up.clear();
    for (int64_t k = anc_begin(cand[c]); k < anc_end(cand[c]); ++k)
      if (known(anc(k)) && shown[place(anc(k))]) {
        up.push_back(anc(k));
        in_up[place(anc(k))] = 1;
      }
    // An ancestor of another shown ancestor is not a nearest one.
    for (int32_t b : up)
      for (int64_t k = anc_begin(b); k < anc_end(b); ++k)
        if (known(anc(k)) && in_up[place(anc(k))]) covered[place(anc(k))] = 1;
    for (int32_t a : up) {
      const size_t pa = place(a);
      if (!covered[pa]) {
        edges.emplace_back(pa, cand[c]);
        ++waiting[c];
      }
      in_up[pa] = covered[pa] = 0;
    }
    if (waiting[c] == 0) tops.push_back(cand[c]);
  }
  auto sibling_order = [&](int32_t a, int32_t b) {
    return rank_[static_cast<size_t>(a)] < rank_[static_cast<size_t>(b)];
  };
  std::sort(edges.begin(), edges.end(), [&](const auto& x, const auto& y) {
    return x.first != y.first ? x.first < y.first : sibling_order(x.second, y.second);
  });
  std::sort(tops.begin(), tops.end(), sibling_order);
  std::vector<size_t> first_edge(cand.size() + 1, 0);
  for (const auto& e : edges) ++first_edge[e.first + 1];
  for (size_t c = 0; c < cand.size(); ++c) first_edge[c + 1] += first_edge[c];
  // Pre-order; a term with several shown parents comes under the last of them visited,
  // so after all its shown ancestors, with its depth known from theirs.
  Shown out;
  std::vector<int32_t> depth(cand.size(), 0);
  std::vector<size_t> stack;  // places; children pushed in reverse so the first pops first
  for (auto top = tops.rbegin(); top != tops.rend(); ++top) stack.push_back(place(*top));
  while (!stack.empty()) {
    const size_t c = stack.back();
    stack.pop_back();
    out.terms.push_back(cand[c]);
    out.depth.push_back(depth[c]);
    out.cells.push_back(cells[c]);
    const size_t mark = stack.size();
    for (size_t e = first_edge[c]; e < first_edge[c + 1]; ++e) {
      const size_t child = place(edges[e].second);
      depth[child] = std::max(depth[child], depth[c] + 1);
      if (--waiting[child] == 0) stack.push_back(child);
    }
    std::reverse(stack.begin() + static_cast<std::ptrdiff_t>(mark), stack.end());
  }
  return out;
}

}  // namespace cellcube::ontology
