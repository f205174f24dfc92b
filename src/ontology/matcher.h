// Matching a column's values to ontology terms and binding columns to ontologies
// (docs/ONTOLOGY.md, "What is matched"). In order: an exact id; a live (non-deprecated)
// label; a synonym that points to exactly one live term and is no term's label (live or
// deprecated); all case-insensitively (ASCII), on the whole value. A deprecated id maps
// to its replaced_by when that is a live term. Ambiguous synonyms, deprecated labels and
// NA never match.
//
// Thread safety: a Matcher is immutable after construction. Ownership: it borrows its
// TermMap, which must outlive it.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "cellcube/status.h"
#include "ontology/term_map.h"

namespace cellcube::ontology {

enum class MatchKind : uint8_t { kNone, kId, kLabel, kSynonym, kReplaced };

struct Match {
  int32_t term = -1;  // in the matcher's map; -1 = no match
  MatchKind kind = MatchKind::kNone;
  int32_t deprecated = -1;  // kReplaced: the deprecated term the value named
};

class Matcher {
 public:
  explicit Matcher(const TermMap& map);
  const TermMap& map() const { return *map_; }
  Match Find(std::string_view value) const;

 private:
  const TermMap* map_;
  std::unordered_map<std::string, int32_t> by_id_;       // lower-cased id -> term
  std::unordered_map<std::string, int32_t> by_label_;    // lower-cased live label -> term
  std::unordered_map<std::string, int32_t> by_synonym_;  // unambiguous, no one's label
};

// One grouping column as the build saw it across its datasets.
struct ColumnValues {
  std::string column;
  // Its distinct non-NA values. For a CELLxGENE pair (the file has COL_ontology_term_id
  // beside COL), `pair_ids[i]` is the id value i came with; else pair_ids is empty.
  std::vector<std::string> values;
  std::vector<std::string> pair_ids;
};

// The ontology a column binds to and each value's match.
struct Binding {
  int32_t matcher = -1;        // into the matchers given; -1 = not backed
  std::vector<Match> matches;  // per value (all kNone when not backed)
  int64_t matched = 0;         // values that match
};

// Binds `column` to the one ontology that backs it, if any: with pair_ids, the
// ontology most of the pair's ids match (by id, or as a deprecated id with a live
// replacement; at least one); else one where at least half (and at least 2) of the
// distinct values match, the one with the most matches if several. The first given wins
// a tie. In a pair the id decides each value's match (Find(pair_ids[i])).
Binding BindColumn(const std::vector<const Matcher*>& matchers, const ColumnValues& column);

}  // namespace cellcube::ontology
