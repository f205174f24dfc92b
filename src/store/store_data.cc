// The invariants of StoreData, and parsing NAME=PATH inputs.
#include <algorithm>

#include "cellcube/store.h"
#include "util/text.h"

namespace cellcube {
namespace {

Status Broken(const std::string& what) { return Status::Corrupt("store: " + what); }

}  // namespace

Status StoreData::ValidateMetadata() const {
  if (columns.size() < 2 || columns[0] != "dataset" || columns[1] != "cell_type")
    return Broken("the first grouping columns must be 'dataset' and 'cell_type'");
  if (labels.size() != columns.size() || codes.size() != columns.size())
    return Broken("column labels or codes missing");
  const int64_t groups = n_groups();
  for (size_t c = 0; c < columns.size(); ++c) {
    if (static_cast<int64_t>(codes[c].size()) != groups)
      return Broken("column '" + columns[c] + "' has the wrong number of groups");
    const auto n_labels = static_cast<int32_t>(labels[c].size());
    for (int32_t code : codes[c])
      if (code < -1 || code >= n_labels || (c == 0 && code < 0))
        return Broken("column '" + columns[c] + "' has a code out of range");
  }
  if (datasets.size() != labels[0].size()) return Broken("dataset records and names disagree");
  for (size_t d = 0; d < datasets.size(); ++d)
    if (datasets[d].name != labels[0][d]) return Broken("dataset records and names disagree");
  for (int64_t n : n_cells)
    if (n <= 0) return Broken("a group has no cells");
  if (gene_symbols.size() != gene_ids.size()) return Broken("gene symbols and ids disagree");
  for (const auto& d : datasets)
    for (int32_t g : d.measured_genes)
      if (g < 0 || g >= n_genes()) return Broken("measured gene out of range");
  return Status::Ok();
}

Status StoreData::Validate() const {
  CC_RETURN_IF_ERROR(ValidateMetadata());
  const int64_t groups = n_groups();
  if (static_cast<int64_t>(indptr.size()) != n_genes() + 1 || indptr[0] != 0 ||
      indptr.back() != n_entries())
    return Broken("indptr does not match the entries");
  const size_t entries = group.size();
  if (nnz.size() != entries || sum.size() != entries || sumsq.size() != entries)
    return Broken("statistics have different lengths");
  // Which genes each dataset measured, to check entries only lie where measured.
  std::vector<std::vector<bool>> measured(datasets.size(), std::vector<bool>(gene_ids.size()));
  for (size_t d = 0; d < datasets.size(); ++d)  // in range: ValidateMetadata checked
    for (int32_t g : datasets[d].measured_genes) measured[d][static_cast<size_t>(g)] = true;
  for (int64_t g = 0; g < n_genes(); ++g) {
    if (indptr[g + 1] < indptr[g]) return Broken("indptr decreases");
    for (int64_t k = indptr[g]; k < indptr[g + 1]; ++k) {
      int32_t row = group[k];
      if (row < 0 || row >= groups) return Broken("entry group out of range");
      if (k > indptr[g] && row <= group[k - 1]) return Broken("entry groups not ascending");
      if (!measured[static_cast<size_t>(codes[0][row])][static_cast<size_t>(g)])
        return Broken("an entry lies in a gene its dataset did not measure");
      if (nnz[k] > static_cast<uint64_t>(n_cells[row])) return Broken("nnz exceeds the cells");
    }
  }
  return Status::Ok();
}

DatasetInput ParseDatasetInput(const std::string& arg) {
  DatasetInput in;
  auto eq = arg.find('=');
  if (eq != std::string::npos && eq > 0 && arg.find('/') > eq) {
    in.name = arg.substr(0, eq);
    in.path = arg.substr(eq + 1);
    return in;
  }
  in.path = arg;
  std::string base =
      arg.substr(arg.find_last_of('/') == std::string::npos ? 0 : arg.find_last_of('/') + 1);
  auto dot = base.rfind(".h5ad");
  in.name = dot != std::string::npos && dot + 5 == base.size() ? base.substr(0, dot) : base;
  return in;
}

}  // namespace cellcube
