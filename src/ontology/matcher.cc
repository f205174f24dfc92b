// Matching values to terms (docs/ONTOLOGY.md "What is matched"): three lower-cased
// indexes built once per term map (ids; live labels; synonyms that name exactly one live
// term and no term's label), looked up in that order.
#include "ontology/matcher.h"

#include <unordered_set>

#include "util/text.h"

namespace cellcube::ontology {

Matcher::Matcher(const TermMap& map) : map_(&map) {
  // Sized up front: MONDO's 32k terms and 100k synonyms otherwise rehash a dozen times.
  const auto n = static_cast<size_t>(map.size());
  std::unordered_set<std::string> any_label(2 * n);
  by_id_.reserve(n);
  by_label_.reserve(n);
  for (int32_t t = 0; t < map.size(); ++t) {
    const auto i = static_cast<size_t>(t);
    by_id_.emplace(ToLower(map.ids[i]), t);
    const std::string label = ToLower(map.labels[i]);
    any_label.insert(label);
    if (!map.deprecated[i]) by_label_.emplace(label, t);
  }
  // A synonym counts when exactly one live term has it and it is nobody's label.
  std::unordered_map<std::string, int32_t> owner(2 * map.synonyms.size());  // -2: shared
  for (int32_t t = 0; t < map.size(); ++t) {
    const auto i = static_cast<size_t>(t);
    if (map.deprecated[i]) continue;
    for (int64_t k = map.synonym_begin[i]; k < map.synonym_begin[i + 1]; ++k) {
      auto [it, fresh] = owner.emplace(ToLower(map.synonyms[static_cast<size_t>(k)]), t);
      if (!fresh && it->second != t) it->second = -2;
    }
  }
  by_synonym_.reserve(owner.size());
  for (const auto& [syn, t] : owner)
    if (t >= 0 && !any_label.count(syn) && syn != "na") by_synonym_.emplace(syn, t);
}

Match Matcher::Find(std::string_view value) const {
  Match m;
  if (value.empty() || value == "NA") return m;
  const std::string key = ToLower(value);
  if (auto it = by_id_.find(key); it != by_id_.end()) {
    const auto t = static_cast<size_t>(it->second);
    if (!map_->deprecated[t]) return {it->second, MatchKind::kId, -1};
    const int32_t live = map_->replaced_by[t];
    if (live >= 0 && !map_->deprecated[static_cast<size_t>(live)])
      return {live, MatchKind::kReplaced, it->second};
    return m;  // deprecated without a live replacement
  }
  if (auto it = by_label_.find(key); it != by_label_.end())
    return {it->second, MatchKind::kLabel, -1};
  if (auto it = by_synonym_.find(key); it != by_synonym_.end())
    return {it->second, MatchKind::kSynonym, -1};
  return m;
}

Binding BindColumn(const std::vector<const Matcher*>& matchers, const ColumnValues& column) {
  Binding best;
  int64_t best_score = 0;
  const bool pair = !column.pair_ids.empty();
  for (size_t i = 0; i < matchers.size(); ++i) {
    Binding b;
    b.matcher = static_cast<int32_t>(i);
    // A pair's score: its ids this map has (live, or deprecated with a live replacement);
    // a label or synonym that happens to equal an id value does not make it this map's.
    int64_t score = 0;
    for (size_t v = 0; v < column.values.size(); ++v) {
      const Match m = matchers[i]->Find(pair ? column.pair_ids[v] : column.values[v]);
      b.matched += m.term >= 0;
      score += pair ? (m.kind == MatchKind::kId || m.kind == MatchKind::kReplaced) : m.term >= 0;
      b.matches.push_back(m);
    }
    const bool qualifies =
        pair ? score > 0 : (score >= 2 && 2 * score >= static_cast<int64_t>(column.values.size()));
    if (qualifies && score > best_score) {  // strictly more: the first given wins a tie
      best = std::move(b);
      best_score = score;
    }
  }
  if (best.matcher < 0) best.matches.assign(column.values.size(), Match());
  return best;
}

}  // namespace cellcube::ontology
