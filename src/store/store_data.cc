// The invariants of StoreData (include/cellcube/store_data.h): Validate and
// ValidateMetadata, which the store writer runs before it writes and the loader after it
// reads. The entries are checked by the same rule every reader uses (entry_rules.h).
#include <algorithm>
#include <limits>
#include <string>

#include "cellcube/store_data.h"
#include "histogram/histogram.h"
#include "store/entry_rules.h"
#include "store/store_loader.h"

namespace cellcube {
namespace {

Status Broken(const std::string& what) { return Status::Corrupt(what); }

// The histograms' layout and the datasets' counts above it (docs/FORMAT.md
// "Histograms"): an upper edge above 0 or none; a count only where a dataset was binned.
Status ValidateHistogramMetadata(const StoreData& s) {
  if (s.hist_max != 0 && !histogram::Layout::Valid(s.hist_max))
    return Broken("the histograms' upper edge is not a finite number above 0");
  for (const auto& d : s.datasets) {
    if (d.values_above_hist_max < -1)
      return Broken("dataset '" + d.name + "' has a negative count of values above the histograms");
    const bool binned = s.has_histograms() && d.negative_values != NegativeValues::kSome;
    if (!binned && d.values_above_hist_max != -1)
      return Broken("dataset '" + d.name +
                    "' counts values above the histograms, but none of its values were binned");
  }
  return Status::Ok();
}

// The entries' histogram records (docs/FORMAT.md "Histograms"): none without
// histograms; with them one per entry, each keeping RecordFault's rules.
Status ValidateRecords(const StoreData& s) {
  if (!s.has_histograms()) {
    if (!s.hist_end.empty() || !s.hist_data.empty())
      return Broken("histogram records in a store without histograms");
    return Status::Ok();
  }
  if (s.hist_end.size() != s.group.size())
    return Broken("the histogram records are not one per entry");
  if (!s.hist_end.empty() && s.hist_end.back() != s.hist_data.size())
    return Broken("the histogram records do not end with their bytes");
  if (s.hist_end.empty() && !s.hist_data.empty()) return Broken("histogram bytes without entries");
  uint64_t begin = 0;
  for (size_t k = 0; k < s.hist_end.size(); ++k) {
    const uint64_t end = s.hist_end[k];
    if (end < begin || end > s.hist_data.size()) return Broken("the histogram records overlap");
    const int32_t d = s.codes[0][static_cast<size_t>(s.group[k])];
    const bool not_binned =
        s.datasets[static_cast<size_t>(d)].negative_values == NegativeValues::kSome;
    if (const char* fault =
            RecordFault(s.hist_data.data() + begin, end - begin, s.nnz[k], not_binned))
      return Broken("entry " + std::to_string(k) + ": " + fault);
    begin = end;
  }
  return Status::Ok();
}

// The embedded terms' own invariants plus: every backed column is a grouping column.
Status ValidateOntologyColumns(const StoreData& s) {
  CC_RETURN_IF_ERROR(s.ontology.Validate());
  for (const auto& name : s.ontology.columns)
    if (std::find(s.columns.begin(), s.columns.end(), name) == s.columns.end())
      return Broken("the ontology terms back column '" + name + "', which is not stored");
  return Status::Ok();
}

}  // namespace

Status StoreOntologies::Validate() const {
  const auto n = static_cast<size_t>(n_terms());
  const auto n_ontologies = static_cast<int32_t>(ontologies.size());
  if (term_labels.size() != n || term_ontology.size() != n || ancestor_begin.size() != n + 1 ||
      ancestor_begin[0] != 0 || ancestor_distance.size() != ancestors.size() ||
      static_cast<size_t>(ancestor_begin[n]) != ancestors.size() ||
      column_ontology.size() != columns.size())
    return Broken("the ontology terms' arrays have inconsistent lengths");
  for (size_t t = 0; t < n; ++t) {
    if (t && !(term_ids[t - 1] < term_ids[t]))
      return Broken("the ontology terms are not in ascending, unique id order");
    if (term_ontology[t] < 0 || term_ontology[t] >= n_ontologies)
      return Broken("ontology term '" + term_ids[t] + "' names no ontology");
    if (ancestor_begin[t + 1] < ancestor_begin[t])
      return Broken("the ontology terms' ancestor offsets decrease");
    for (int64_t k = ancestor_begin[t]; k < ancestor_begin[t + 1]; ++k) {
      const int32_t a = ancestors[static_cast<size_t>(k)];
      if (a < 0 || a >= n_terms() || static_cast<size_t>(a) == t ||
          (k > ancestor_begin[t] && a <= ancestors[static_cast<size_t>(k - 1)]))
        return Broken("the ancestors of ontology term '" + term_ids[t] +
                      "' are out of range or not ascending");
    }
  }
  for (int32_t o : column_ontology)
    if (o < 0 || o >= n_ontologies) return Broken("an ontology-backed column names no ontology");
  return Status::Ok();
}

Status StoreData::ValidateMetadata() const {
  if (columns.size() < 2 || columns[0] != "dataset" || columns[1] != "cell_type")
    return Broken("the first obs columns must be 'dataset' and 'cell_type'");
  if (labels.size() != columns.size() || codes.size() != columns.size())
    return Broken("obs columns without labels or codes");
  const int64_t groups = n_groups();
  if (groups >= std::numeric_limits<int32_t>::max()) return Broken("too many groups");
  for (size_t c = 0; c < columns.size(); ++c) {
    if (static_cast<int64_t>(codes[c].size()) != groups)
      return Broken("obs column '" + columns[c] + "' has " + std::to_string(codes[c].size()) +
                    " rows, obs/n_cells has " + std::to_string(groups));
    const auto n_labels = static_cast<int64_t>(labels[c].size());
    for (int32_t code : codes[c])
      if (code < -1 || code >= n_labels || (c == 0 && code < 0))
        return Broken("obs column '" + columns[c] + "' has a code out of range");
    for (size_t k = 0; k < c; ++k)
      if (columns[k] == columns[c]) return Broken("obs column '" + columns[c] + "' twice");
  }
  if (datasets.size() != labels[0].size())
    return Broken("uns/cellcube/datasets has " + std::to_string(datasets.size()) +
                  " rows but obs 'dataset' has " + std::to_string(labels[0].size()) +
                  " categories");
  for (size_t d = 0; d < datasets.size(); ++d)
    if (datasets[d].name != labels[0][d])
      return Broken("dataset '" + datasets[d].name +
                    "' of uns/cellcube/datasets is not obs 'dataset' category " +
                    std::to_string(d));
  for (int64_t n : n_cells)
    if (n <= 0) return Broken("obs/n_cells has a group without cells");
  if (gene_symbols.size() != gene_ids.size())
    return Broken("var 'symbol' and the var index have different lengths");
  if (gene_ids.size() >= static_cast<size_t>(std::numeric_limits<int32_t>::max()))
    return Broken("too many genes");
  CC_RETURN_IF_ERROR(ValidateHistogramMetadata(*this));
  CC_RETURN_IF_ERROR(ValidateOntologyColumns(*this));
  for (const auto& d : datasets)
    for (size_t k = 0; k < d.measured_genes.size(); ++k) {
      const int32_t g = d.measured_genes[k];
      if (g < 0 || g >= n_genes() || (k && g <= d.measured_genes[k - 1]))
        return Broken("the measured genes of dataset '" + d.name +
                      "' are out of range or not ascending");
    }
  return Status::Ok();
}

Status StoreData::Validate() const {
  CC_RETURN_IF_ERROR(ValidateMetadata());
  if (static_cast<int64_t>(indptr.size()) != n_genes() + 1 || indptr[0] != 0 ||
      indptr.back() != n_entries())
    return Broken("indptr does not match the entries");
  const size_t entries = group.size();
  if (nnz.size() != entries || sum.size() != entries || m2.size() != entries)
    return Broken("statistics have different lengths");
  const MeasuredBits measured = MeasuredGeneBits(*this);
  const EntryContext context{n_groups(), n_cells.data(), codes[0].data(), &measured};
  for (int64_t g = 0; g < n_genes(); ++g) {
    if (indptr[g + 1] < indptr[g]) return Broken("indptr decreases");
    int64_t previous = -1;
    for (int64_t k = indptr[g]; k < indptr[g + 1]; ++k) {
      if (const char* fault = EntryFault(context, g, group[k], previous, nnz[k], sum[k], m2[k]))
        return Broken("entry " + std::to_string(k) + " of gene '" + gene_ids[g] + "': " + fault);
      previous = group[k];
    }
  }
  return ValidateRecords(*this);
}

}  // namespace cellcube
