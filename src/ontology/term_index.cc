#include "ontology/term_index.h"

#include <algorithm>
#include <functional>

namespace cellcube::ontology {
namespace {

std::string Key(int32_t ontology, std::string_view value, bool lower) {
  std::string key = std::to_string(ontology);
  key.push_back('\x1f');
  for (char c : value)
    key.push_back(lower && c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c);
  return key;
}

}  // namespace

TermIndex::TermIndex(const StoreOntologies& terms) : terms_(&terms) {
  for (int32_t t = 0; t < terms.n_terms(); ++t) {
    const auto i = static_cast<size_t>(t);
    const int32_t o = terms.term_ontology[i];
    by_key_.emplace(Key(o, terms.term_ids[i], true), t);
    by_key_.emplace(Key(o, terms.term_labels[i], true), t);
    by_label_.emplace(Key(o, terms.term_labels[i], false), t);
  }
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

TermIndex::Shown TermIndex::Rows(const std::vector<int64_t>& own_cells) const {
  const auto& o = *terms_;
  const auto n = static_cast<size_t>(o.n_terms());
  auto ancestors_of = [&](int32_t t, const std::function<void(int32_t)>& f) {
    for (int64_t k = o.ancestor_begin[static_cast<size_t>(t)];
         k < o.ancestor_begin[static_cast<size_t>(t) + 1]; ++k)
      f(o.ancestors[static_cast<size_t>(k)]);
  };
  // Each term's subtree cells: a term's own cells count in it and once in each ancestor
  // (the map lists each ancestor once, however many paths lead there).
  std::vector<int64_t> cells(n, 0);
  std::vector<uint8_t> candidate(n, 0);
  for (int32_t t = 0; t < o.n_terms(); ++t) {
    const int64_t own = own_cells[static_cast<size_t>(t)];
    if (own <= 0) continue;
    cells[static_cast<size_t>(t)] += own;
    candidate[static_cast<size_t>(t)] = 1;
    ancestors_of(t, [&](int32_t a) {
      cells[static_cast<size_t>(a)] += own;
      candidate[static_cast<size_t>(a)] = 1;
    });
  }
  // A term whose descendant holds exactly its cells says nothing that descendant does not.
  std::vector<uint8_t> shown = candidate;
  for (int32_t t = 0; t < o.n_terms(); ++t) {
    if (!candidate[static_cast<size_t>(t)]) continue;
    ancestors_of(t, [&](int32_t a) {
      if (cells[static_cast<size_t>(a)] == cells[static_cast<size_t>(t)])
        shown[static_cast<size_t>(a)] = 0;
    });
  }
  // Shown parents: the nearest shown ancestors (no shown ancestor lies between).
  std::vector<std::vector<int32_t>> children(n);
  std::vector<int32_t> waiting(n, 0), tops;
  for (int32_t t = 0; t < o.n_terms(); ++t) {
    if (!shown[static_cast<size_t>(t)]) continue;
    std::vector<int32_t> up;
    ancestors_of(t, [&](int32_t a) {
      if (shown[static_cast<size_t>(a)]) up.push_back(a);
    });
    for (int32_t a : up) {
      bool nearest = true;
      for (int32_t b : up) nearest = nearest && !(b != a && InSubtree(b, a));
      if (!nearest) continue;
      children[static_cast<size_t>(a)].push_back(t);
      ++waiting[static_cast<size_t>(t)];
    }
    if (waiting[static_cast<size_t>(t)] == 0) tops.push_back(t);
  }
  std::vector<std::string> folded(n);  // labels lower-cased, for the order
  for (int32_t t = 0; t < o.n_terms(); ++t)
    if (shown[static_cast<size_t>(t)])
      folded[static_cast<size_t>(t)] = Key(0, o.term_labels[static_cast<size_t>(t)], true);
  auto by_label = [&](int32_t a, int32_t b) {
    const auto ia = static_cast<size_t>(a), ib = static_cast<size_t>(b);
    if (folded[ia] != folded[ib]) return folded[ia] < folded[ib];
    return o.term_ids[ia] < o.term_ids[ib];
  };
  std::sort(tops.begin(), tops.end(), by_label);
  for (auto& c : children) std::sort(c.begin(), c.end(), by_label);
  // Pre-order; a term with several shown parents comes under the last of them visited,
  // so after all its shown ancestors, with its depth known from theirs.
  Shown out;
  std::vector<int32_t> depth(n, 0);
  std::function<void(int32_t)> visit = [&](int32_t t) {
    out.terms.push_back(t);
    out.depth.push_back(depth[static_cast<size_t>(t)]);
    out.cells.push_back(cells[static_cast<size_t>(t)]);
    for (int32_t c : children[static_cast<size_t>(t)]) {
      depth[static_cast<size_t>(c)] =
          std::max(depth[static_cast<size_t>(c)], depth[static_cast<size_t>(t)] + 1);
      if (--waiting[static_cast<size_t>(c)] == 0) visit(c);
    }
  };
  for (int32_t t : tops) visit(t);
  return out;
}

}  // namespace cellcube::ontology
