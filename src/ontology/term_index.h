// Looking terms up and walking the tree in a store's embedded ontology terms (query
// time; docs/ONTOLOGY.md "Roll-up"): by id or label, case-insensitively; subtree
// membership from the ancestor maps; the shown terms of a roll-up, pruned and in
// depth-first pre-order with their depth.
//
// Thread safety: immutable after construction. Ownership: borrows the StoreOntologies,
// which must outlive it.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "cellcube/store_data.h"

namespace cellcube::ontology {

class TermIndex {
 public:
  explicit TermIndex(const StoreOntologies& terms);

  const StoreOntologies& terms() const { return *terms_; }
  // The term of `ontology` whose id or label equals `value` (ASCII case-insensitive); -1.
  int32_t Find(int32_t ontology, std::string_view value) const;
  // The term of `ontology` whose label is exactly `label`; -1. (A backed column's values
  // are labels.)
  int32_t FindLabel(int32_t ontology, std::string_view label) const;
  // Whether `term` is `root` or one of its descendants (root is among its ancestors).
  bool InSubtree(int32_t term, int32_t root) const;
  // The nearest of `term`'s ancestors: those that are no ancestor of another of its
  // ancestors, ascending.
  std::vector<int32_t> Parents(int32_t term) const;

  // A roll-up's rows (docs/ONTOLOGY.md "Roll-up"): given the cells terms hold of their
  // own (`own`: (term, cells) pairs, a term at most once), the terms shown: every term holding
  // cells or an ancestor of one, less each term one of whose descendants holds exactly
  // the same cells; in depth-first pre-order (top terms, and each term's children,
  // sorted by label case-insensitively, then id; a term with several shown parents
  // once, under the last of them visited), with each one's depth (0 without a shown
  // parent, else 1 + the largest depth of its shown parents).
  struct Shown {
    std::vector<int32_t> terms;  // in pre-order
    std::vector<int32_t> depth;  // per shown term
    std::vector<int64_t> cells;  // per shown term: the cells of its subtree
  };
  Shown Rows(const std::vector<std::pair<int32_t, int64_t>>& own) const;

 private:
  const StoreOntologies* terms_;
  std::unordered_map<std::string, int32_t> by_key_;    // "ontology\x1f" + lower id/label
  std::unordered_map<std::string, int32_t> by_label_;  // "ontology\x1f" + exact label
  std::vector<int32_t> rank_;  // per term: its place in sibling order (label, then id)
};

}  // namespace cellcube::ontology
