// StoreEntries' histogram layer (docs/FORMAT.md "Histograms"): its arrays, located at
// open with the entry arrays, and the check of each (gene, dataset)'s records where a
// read first needs them, like the entries' own checks (store_entries.cc).
#include <algorithm>
#include <string>

#include "histogram/record.h"
#include "store/store_entries.h"

namespace cellcube {

Status StoreEntries::LoadHistograms(const h5ad::File& file, const StoreArrays& located) {
  flagged_.assign(static_cast<size_t>(r_.n_datasets()), 0);
  for (size_t d = 0; d < flagged_.size(); ++d)
    flagged_[d] = r_.meta().datasets[d].negative_values == NegativeValues::kSome;
  if (!located.has_histograms()) return Status::Ok();
  CC_ASSIGN_OR_RETURN(hist_.data, View(file, located.hist_data));
  CC_ASSIGN_OR_RETURN(hist_.indptr, View(file, located.hist_indptr));
  CC_ASSIGN_OR_RETURN(hist_.offsets, View(file, located.hist_offsets));
  return CheckHistIndptr();
}

// hist_indptr as a whole (O(genes)): ascending from 0 to the records' bytes, so every
// gene's records lie inside hist_data.
Status StoreEntries::CheckHistIndptr() const {
  const auto* indptr = hist_.indptr.As<int64_t>();
  const int64_t n_genes = r_.n_genes();
  if (indptr[0] != 0) return Status::Corrupt("raw.cellcube/hist_indptr does not start at 0");
  for (int64_t g = 0; g < n_genes; ++g)
    if (indptr[g + 1] < indptr[g])
      return Status::Corrupt("raw.cellcube/hist_indptr decreases at gene " + std::to_string(g));
  if (indptr[n_genes] != hist_.data.size)
    return Status::Corrupt("raw.cellcube/hist_indptr ends at " + std::to_string(indptr[n_genes]) +
                           ", not at the " + std::to_string(hist_.data.size) +
                           " bytes of hist_data");
  return Status::Ok();
}

void StoreEntries::DatasetRecordSpan(int64_t gene, int64_t dataset, uint64_t* begin,
                                     uint64_t* end) const {
  const auto* indptr = hist_.indptr.As<int64_t>();
  const auto* offsets = hist_.offsets.As<uint32_t>();
  const auto gene_begin = static_cast<uint64_t>(indptr[gene]);
  const auto gene_bytes = static_cast<uint64_t>(indptr[gene + 1]) - gene_begin;
  const int64_t n_datasets = r_.n_datasets();
  const uint64_t at = static_cast<uint64_t>(gene * n_datasets + dataset);
  // Clamped into the gene, so that even a damaged offset points inside hist_data; the
  // check refuses what the clamp hides.
  const uint64_t b = std::min<uint64_t>(offsets[at], gene_bytes);
  const uint64_t e =
      dataset + 1 < n_datasets ? std::min<uint64_t>(offsets[at + 1], gene_bytes) : gene_bytes;
  *begin = gene_begin + b;
  *end = gene_begin + std::max(b, e);
}

namespace {

template <typename Nnz>
const char* DecodeSpan(const Nnz* nnz, int64_t first, int64_t last, const uint8_t* p,
                       const uint8_t* end) {
  const char* why = nullptr;
  for (int64_t k = first; k < last; ++k) {
    p += histogram::SkipRecord(p, static_cast<size_t>(end - p), nnz[k], &why);
    if (why) return why;
  }
  return p == end ? nullptr : "its dataset's histogram records do not end where the next begin";
}

}  // namespace

Status StoreEntries::CheckHistDataset(int64_t gene, int64_t dataset) const {
  const auto bit = static_cast<uint64_t>(gene) * static_cast<uint64_t>(r_.n_datasets()) +
                   static_cast<uint64_t>(dataset);
  if ((hist_good_[bit / 64].load(std::memory_order_acquire) >> (bit % 64)) & 1) return Status::Ok();
  const auto* offsets = hist_.offsets.As<uint32_t>();
  const auto* indptr = hist_.indptr.As<int64_t>();
  const uint64_t gene_bytes = static_cast<uint64_t>(indptr[gene + 1] - indptr[gene]);
  const int64_t n_datasets = r_.n_datasets();
  const char* why = nullptr;
  const uint32_t b = offsets[bit];
  const uint64_t e = dataset + 1 < n_datasets ? offsets[bit + 1] : gene_bytes;
  const EntryRange range = DatasetEntries(gene, dataset);
  if ((dataset == 0 && b != 0) || b > e || e > gene_bytes) {
    why = "its dataset's histogram offsets are out of order";
  } else if (Flagged(dataset)) {
    if (e != b) why = "a dataset with negative values has histogram records";
  } else {
    const uint8_t* data = hist_.data.As<uint8_t>() + indptr[gene];
    why = a_.nnz.type == ArrayType::kUInt16
              ? DecodeSpan(a_.nnz.As<uint16_t>(), range.begin, range.end, data + b, data + e)
              : DecodeSpan(a_.nnz.As<uint32_t>(), range.begin, range.end, data + b, data + e);
  }
  if (why)
    return Status::Corrupt(
        "store '" + r_.path() + "' is damaged: the histograms of gene '" +
        std::string(r_.gene_ids()[static_cast<size_t>(gene)]) + "' in dataset '" +
        r_.meta().datasets[static_cast<size_t>(dataset)].name + "': " + why + " (rebuild it)");
  hist_good_[bit / 64].fetch_or(uint64_t{1} << (bit % 64), std::memory_order_release);
  return Status::Ok();
}

Status StoreEntries::CheckHistograms(const std::vector<int32_t>& genes,
                                     const std::vector<int32_t>& datasets) const {
  if (!hist_.present()) return Status::Internal("histograms read from a store without them");
  if (r_.dataset_group_begin().empty())
    return Status::Corrupt("store '" + r_.path() +
                           "' is damaged: its datasets' groups are not consecutive, so its "
                           "histogram offsets mean nothing (rebuild it)");
  std::call_once(hist_bits_made_, [&] {
    const uint64_t bits =
        static_cast<uint64_t>(r_.n_genes()) * static_cast<uint64_t>(r_.n_datasets());
    hist_good_ = std::make_unique<std::atomic<uint64_t>[]>(bits / 64 + 1);
  });
  // A read that checks whole genes may read any dataset's entries of them: check them all.
  const bool by_dataset = ChecksByDataset(datasets.size());
  for (int32_t g : genes) {
    if (by_dataset) {
      for (int32_t d : datasets) CC_RETURN_IF_ERROR(CheckHistDataset(g, d));
    } else {
      for (int64_t d = 0; d < r_.n_datasets(); ++d) CC_RETURN_IF_ERROR(CheckHistDataset(g, d));
    }
  }
  return Status::Ok();
}

}  // namespace cellcube
