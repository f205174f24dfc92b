#include "query/scales.h"

#include <algorithm>
#include <map>
#include <utility>

#include "util/text.h"

namespace cellcube::query {
namespace {

// The distinct datasets of `groups`, ascending.
std::vector<int32_t> DatasetsOf(const StoreData& meta, const std::vector<int32_t>& groups) {
  std::vector<int32_t> out;
  for (int32_t g : groups) {  // a dataset's groups are usually consecutive: few repeats
    const int32_t d = meta.codes[0][static_cast<size_t>(g)];
    if (out.empty() || out.back() != d) out.push_back(d);
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::string NameList(const StoreData& meta, const std::vector<int32_t>& datasets) {
  std::vector<std::string> names;
  names.reserve(datasets.size());
  for (int32_t d : datasets) names.push_back(meta.datasets[static_cast<size_t>(d)].name);
  std::string out = QuoteList(names, 8);
  if (names.size() > 8) out += " (" + std::to_string(names.size()) + " in all)";
  return out;
}

// "dataset 'a' holds" or "datasets 'a', 'b' hold": the datasets as a sentence's subject.
std::string Subject(const StoreData& meta, const std::vector<int32_t>& datasets,
                    const std::string& verb_one, const std::string& verb_many) {
  const bool one = datasets.size() == 1;
  return (one ? "dataset " : "datasets ") + NameList(meta, datasets) + " " +
         (one ? verb_one : verb_many);
}

// "the selected cells come from datasets aggregated with different transforms ...".
void NoteTransforms(const StoreData& meta, const std::vector<int32_t>& datasets,
                    std::vector<std::string>* notes) {
  std::map<std::string, std::vector<int32_t>> by_transform;
  for (int32_t d : datasets)
    by_transform[meta.datasets[static_cast<size_t>(d)].transform].push_back(d);
  if (by_transform.size() < 2) return;
  std::string list;
  for (const auto& [transform, members] : by_transform)
    list += (list.empty() ? "" : "; ") + transform + ": " + NameList(meta, members);
  notes->push_back("the selected cells come from datasets aggregated with different transforms (" +
                   list + "): their values are on different scales, pooled and compared anyway");
}

// Datasets of unknown sign: aggregated before stores recorded negative values.
void NoteUnknown(const StoreData& meta, const std::vector<int32_t>& unknown,
                 std::vector<std::string>* notes) {
  if (unknown.empty()) return;
  notes->push_back(Subject(meta, unknown, "was", "were") +
                   " aggregated before cellcube recorded whether values go below 0: if "
                   "they hold scaled data (e.g. z-scores), frac and mean_expr mean little "
                   "there; rebuild the store with this version of cellcube to check");
}

std::vector<int32_t> WithSign(const std::vector<NegativeValues>& negative,
                              const std::vector<int32_t>& datasets, NegativeValues sign) {
  std::vector<int32_t> out;
  for (int32_t d : datasets)
    if (negative[static_cast<size_t>(d)] == sign) out.push_back(d);
  return out;
}

// The start of the notes on datasets with values below 0, queries' and DE's alike.
std::string NegativeSubject(const StoreData& meta, const std::vector<int32_t>& datasets) {
  return Subject(meta, datasets, "holds", "hold") +
         " values below 0 (scaled data, e.g. z-scores), where only values above 0 count as "
         "expressing: ";
}

// Marks the rows holding cells of a dataset with negative values that measured their
// gene; returns those datasets, ascending.
std::vector<int32_t> MarkNegativeRows(const StoreReader& store, const std::vector<int32_t>& groups,
                                      const std::vector<int32_t>& split_of, QueryResult* result) {
  const StoreData& meta = store.meta();
  // (split, dataset) for every split holding cells of a dataset with negative values.
  std::vector<std::pair<int32_t, int32_t>> negative_in_split;
  for (size_t i = 0; i < groups.size(); ++i) {
    const auto d = static_cast<size_t>(meta.codes[0][static_cast<size_t>(groups[i])]);
    if (meta.datasets[d].negative_values == NegativeValues::kSome)
      negative_in_split.emplace_back(split_of[i], static_cast<int32_t>(d));
  }
  std::sort(negative_in_split.begin(), negative_in_split.end());
  negative_in_split.erase(std::unique(negative_in_split.begin(), negative_in_split.end()),
                          negative_in_split.end());
  std::vector<int32_t> shown;
  for (QueryResult::Row& row : result->rows) {
    const int32_t gene = result->gene_indices[static_cast<size_t>(row.gene)];
    auto it = std::lower_bound(negative_in_split.begin(), negative_in_split.end(),
                               std::make_pair(row.split, int32_t{-1}));
    for (; it != negative_in_split.end() && it->first == row.split; ++it)
      if (store.Measured(it->second, gene)) {
        row.holds_negative = true;
        shown.push_back(it->second);
      }
  }
  std::sort(shown.begin(), shown.end());
  shown.erase(std::unique(shown.begin(), shown.end()), shown.end());
  return shown;
}

}  // namespace

DatasetScales::DatasetScales(const StoreData& meta) {
  for (const DatasetRecord& r : meta.datasets) {
    negative_.push_back(r.negative_values);
    uniform_ = uniform_ && r.negative_values == NegativeValues::kNone &&
               r.transform == meta.datasets.front().transform;
  }
}

void DatasetScales::Annotate(const StoreReader& store, const std::vector<int32_t>& groups,
                             const std::vector<int32_t>& split_of, QueryResult* result) const {
  if (uniform_) return;  // the usual store: nothing to look at
  const StoreData& meta = store.meta();
  const std::vector<int32_t>& datasets = result->datasets;
  NoteTransforms(meta, datasets, &result->notes);
  // Only a selection holding a dataset with negative values has rows to mark.
  if (!WithSign(negative_, datasets, NegativeValues::kSome).empty()) {
    const std::vector<int32_t> shown = MarkNegativeRows(store, groups, split_of, result);
    if (!shown.empty())
      result->notes.push_back(NegativeSubject(meta, shown) +
                              "frac and mean_expr mean little on such data, and mean_expr is "
                              "left empty in the rows that hold their cells; rebuild from counts "
                              "(--matrix raw or a counts layer) for these metrics");
  }
  NoteUnknown(meta, WithSign(negative_, datasets, NegativeValues::kUnknown), &result->notes);
}

void DatasetScales::NoteComparison(const StoreData& meta, const std::vector<int32_t>& groups,
                                   std::vector<std::string>* notes) const {
  if (uniform_) return;
  const std::vector<int32_t> datasets = DatasetsOf(meta, groups);
  NoteTransforms(meta, datasets, notes);
  const std::vector<int32_t> negative = WithSign(negative_, datasets, NegativeValues::kSome);
  if (!negative.empty())
    notes->push_back(NegativeSubject(meta, negative) +
                     "frac means little on such data (the t-test, on means, is unaffected)");
  NoteUnknown(meta, WithSign(negative_, datasets, NegativeValues::kUnknown), notes);
}

}  // namespace cellcube::query
