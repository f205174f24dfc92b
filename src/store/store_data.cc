// The invariants of StoreData (include/cellcube/store_data.h): Validate and
// ValidateMetadata, which the store writer runs before it writes and the loader after it
// reads. The entries are checked by the same rule every reader uses (entry_rules.h).
#include <limits>
#include <string>

#include "cellcube/store_data.h"
#include "store/entry_rules.h"
#include "store/store_loader.h"

namespace cellcube {
namespace {

Status Broken(const std::string& what) { return Status::Corrupt(what); }

}  // namespace

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
  return Status::Ok();
}

}  // namespace cellcube
