// StoreEntries: the entry arrays of a mapped store and their checks, and EntryRead, the
// one way to read them (see store_entries.h).
#include "store/store_entries.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <mutex>

#include "store/entry_check.h"
#include "store/store_layout.h"
#include "store/store_loader.h"
#include "util/parallel.h"

namespace cellcube {
namespace {

constexpr uint8_t kUnchecked = 0, kGood = 1, kDamaged = 2;
constexpr size_t kCopyBudgetBytes = size_t{256} << 20;

// Checks entries `range` of `gene` in place: their groups lie in [group_begin,
// group_end), and the entries on either side hold none of them. Compiled per layout.
template <typename Index, typename Nnz, typename Sum, typename Second>
Status CheckEntryRange(const StoreEntries& e, int64_t gene, EntryRange range, int64_t group_begin,
                       int64_t group_end) {
  const int64_t gene_begin = e.indptr().IntAt(gene);
  const int64_t n = e.indptr().IntAt(gene + 1) - gene_begin;
  const Index* idx = e.indices().As<Index>() + gene_begin;
  const EntryRange local{range.begin - gene_begin, range.end - gene_begin};
  entry_check::Fault fault = entry_check::NeighbourFault(idx, n, local, group_begin, group_end);
  if (fault.at < 0) {
    fault = entry_check::SpanFault(e.reader(), gene, idx + local.begin,
                                   e.nnz().As<Nnz>() + range.begin, e.sum().As<Sum>() + range.begin,
                                   e.second_moment().As<Second>() + range.begin,
                                   local.end - local.begin, group_begin, group_end);
    if (fault.at >= 0) fault.at += local.begin;
  }
  if (fault.at < 0) return Status::Ok();
  return entry_check::Damaged(e.reader(), gene, gene_begin + fault.at, fault.why);
}

}  // namespace

// Copies of some datasets' entries (PrepareRead), most recently used first.
struct StoreEntries::Copies {
  struct Copy {
    std::vector<int32_t> datasets;
    std::shared_ptr<const EntryCopy> copy;
  };
  std::mutex mu;
  std::vector<Copy> list;
};

StoreEntries::StoreEntries(const StoreReader& reader)
    : r_(reader), copies_(std::make_unique<Copies>()) {}

StoreEntries::~StoreEntries() {
  if (preload_block_) ::munmap(preload_block_, preload_length_);
  if (map_) ::munmap(map_, map_bytes_);
  if (fd_ >= 0) ::close(fd_);
}

Status StoreEntries::Map(int fd, uint64_t bytes, const std::string& path) {
  fd_ = fd;
  file_size_ = bytes;
  if (bytes == 0) return Status::Ok();
  void* map = ::mmap(nullptr, bytes, PROT_READ, MAP_SHARED, fd, 0);
  if (map == MAP_FAILED)
    return Status::IoError("cannot map '" + path + "': " + std::strerror(errno));
  map_ = map;
  map_bytes_ = bytes;
  return Status::Ok();
}

// One of the five arrays: in place when possible, else read into memory.
Result<ArrayView> StoreEntries::View(const h5ad::File& file, const LocatedArray& a) {
  ArrayView v;
  v.type = a.type;
  v.size = a.elements;
  if (a.in_place) {
    const char* p = map() + a.offset;
    if (a.aligned()) {
      v.data = p;
      v.mapped = true;
      return v;
    }
    auto& buf = owned_.emplace_back((a.bytes() + 7) / 8);
    if (a.bytes()) std::memcpy(buf.data(), p, a.bytes());
    v.data = buf.data();
    return v;
  }
  // Not in place (chunked, compressed, big-endian): read through the h5ad reader.
  CC_ASSIGN_OR_RETURN(auto words, ReadWhole(file, a));
  v.data = owned_.emplace_back(std::move(words)).data();
  return v;
}

// The sum and second layers must share the nnz layer's pattern: the same object (hard
// links, as cellcube writes them) or equal copies (as a tool re-saving them writes).
Status StoreEntries::CheckSamePattern(const h5ad::File& file, const std::string& path,
                                      const LocatedArray& reference, const ArrayView& view) {
  CC_ASSIGN_OR_RETURN(LocatedArray a, LocateLike(file, path, reference, file_size_));
  if (a.in_place && view.mapped && map() + a.offset == view.data) return Status::Ok();
  const size_t mark = owned_.size();
  CC_ASSIGN_OR_RETURN(ArrayView copy, View(file, a));
  const bool same =
      view.size == 0 || std::memcmp(copy.data, view.data,
                                    static_cast<size_t>(view.size) * ArrayWidth(view.type)) == 0;
  owned_.resize(mark);  // drop the copy if it was read into memory
  if (!same) return Status::Corrupt("'" + path + "' differs from the nnz layer's");
  return Status::Ok();
}

// indptr as a whole (O(genes)): ascending from 0 to the number of entries, so every
// gene's entries lie inside the arrays.
Status StoreEntries::CheckIndptr() const {
  const int64_t n_genes = r_.n_genes();
  const ArrayView& indptr = a_.indptr;
  if (indptr.IntAt(0) != 0) return Status::Corrupt("layers/nnz/indptr does not start at 0");
  for (int64_t g = 0; g < n_genes; ++g) {
    const int64_t begin = indptr.IntAt(g), end = indptr.IntAt(g + 1);
    if (end < begin || end > n_entries_)
      return Status::Corrupt(
          "layers/nnz/indptr is not ascending from 0 to the number of entries (gene " +
          std::to_string(g) + ")");
  }
  if (indptr.IntAt(n_genes) != n_entries_)
    return Status::Corrupt("layers/nnz/indptr ends at " + std::to_string(indptr.IntAt(n_genes)) +
                           ", not at the " + std::to_string(n_entries_) +
                           " entries of its indices");
  return Status::Ok();
}

Status StoreEntries::Load(const h5ad::File& file, bool check_indptr) {
  const int version = r_.format_version();
  CC_ASSIGN_OR_RETURN(StoreArrays located,
                      LocateStoreArrays(file, version, r_.n_genes(), r_.n_datasets(),
                                        r_.meta().has_histograms(), file_size_));
  n_entries_ = located.n_entries;
  CC_ASSIGN_OR_RETURN(a_.indptr, View(file, located.indptr));
  CC_ASSIGN_OR_RETURN(a_.indices, View(file, located.indices));
  CC_ASSIGN_OR_RETURN(a_.nnz, View(file, located.nnz));
  CC_ASSIGN_OR_RETURN(a_.sum, View(file, located.sum));
  CC_ASSIGN_OR_RETURN(a_.second, View(file, located.second));
  if (located.has_entry_offsets()) {
    CC_ASSIGN_OR_RETURN(offsets_, View(file, located.entry_offsets));
  }
  CC_RETURN_IF_ERROR(LoadHistograms(file, located));
  const EntryArrayNames names = EntryArraysOf(version);
  CC_RETURN_IF_ERROR(CheckSamePattern(file, names.sum_indptr, located.indptr, a_.indptr));
  CC_RETURN_IF_ERROR(CheckSamePattern(file, names.sum_indices, located.indices, a_.indices));
  CC_RETURN_IF_ERROR(CheckSamePattern(file, names.second_indptr, located.indptr, a_.indptr));
  CC_RETURN_IF_ERROR(CheckSamePattern(file, names.second_indices, located.indices, a_.indices));
  if (!check_indptr) return Status::Ok();
  CC_RETURN_IF_ERROR(CheckIndptr());
  gene_verdict_ = std::make_unique<std::atomic<uint8_t>[]>(static_cast<size_t>(r_.n_genes()));
  check_range_ = VisitEntryTypes(a_, [](auto index, auto nnz, auto sum, auto second) {
    return &CheckEntryRange<decltype(index), decltype(nnz), decltype(sum), decltype(second)>;
  });
  return Status::Ok();
}

int StoreEntries::arrays_mapped() const {
  return a_.indptr.mapped + a_.indices.mapped + a_.nnz.mapped + a_.sum.mapped + a_.second.mapped;
}

Status StoreEntries::CheckGene(int64_t gene) const {
  if (gene < 0 || gene >= r_.n_genes()) return Status::Internal("gene index out of range");
  std::atomic<uint8_t>& verdict = gene_verdict_[static_cast<size_t>(gene)];
  const uint8_t known = verdict.load(std::memory_order_acquire);
  if (known == kGood) return Status::Ok();
  // Unchecked, or damaged (checked again for the message: it is rare and cheap).
  const EntryRange all{a_.indptr.IntAt(gene), a_.indptr.IntAt(gene + 1)};
  Status s = check_range_(*this, gene, all, 0, r_.n_groups());
  if (s.ok()) s = CheckEntryOffsets(gene);
  if (known == kUnchecked) verdict.store(s.ok() ? kGood : kDamaged, std::memory_order_release);
  return s;
}

bool StoreEntries::GeneChecked(int64_t gene) const {
  return gene_verdict_[static_cast<size_t>(gene)].load(std::memory_order_acquire) == kGood;
}

EntryRange StoreEntries::DatasetEntries(int64_t gene, int64_t dataset) const {
  const std::vector<int64_t>& first = r_.dataset_group_begin();
  if (first.empty()) return {};
  if (offsets_.size > 0) return OffsetsOf(gene).Of(dataset);  // format 3 says where
  const int64_t begin = a_.indptr.IntAt(gene), n = a_.indptr.IntAt(gene + 1) - begin;
  const auto d = static_cast<size_t>(dataset);
  const int64_t last = r_.dataset_group_end()[d];
  const EntryRange local =
      a_.indices.type == ArrayType::kInt64
          ? entry_check::LocateGroups(a_.indices.As<int64_t>() + begin, n, first[d], last)
          : entry_check::LocateGroups(a_.indices.As<int32_t>() + begin, n, first[d], last);
  return {begin + local.begin, begin + local.end};
}

OffsetRow StoreEntries::OffsetsOf(int64_t gene) const {
  OffsetRow row;
  row.begin = a_.indptr.IntAt(gene);
  row.n = a_.indptr.IntAt(gene + 1) - row.begin;
  row.n_datasets = r_.n_datasets();
  row.at = offsets_.As<uint32_t>() + gene * row.n_datasets;
  return row;
}

// A gene's entry_offsets against its entries, which CheckGene found ascending: each
// dataset's offset is where its groups begin, the entry before it of an earlier group
// and the one at it of that dataset's first group or later. A read of a few datasets
// checks its ranges' neighbours instead (CheckDatasetEntries).
Status StoreEntries::CheckEntryOffsets(int64_t gene) const {
  const std::vector<int64_t>& first = r_.dataset_group_begin();
  if (offsets_.size == 0 || first.empty()) return Status::Ok();
  const int64_t begin = a_.indptr.IntAt(gene), n = a_.indptr.IntAt(gene + 1) - begin;
  const int64_t n_datasets = r_.n_datasets();
  const uint32_t* at = offsets_.As<uint32_t>() + gene * n_datasets;
  for (int64_t d = 0; d < n_datasets; ++d) {
    const int64_t o = at[d], group = first[static_cast<size_t>(d)];
    const bool fits = o <= n && (d == 0 || o >= at[d - 1]) &&
                      (o == 0 || a_.indices.IntAt(begin + o - 1) < group) &&
                      (o == n || a_.indices.IntAt(begin + o) >= group);
    if (!fits)
      return Status::Corrupt("store '" + r_.path() +
                             "' is damaged: raw.cellcube/entry_offsets of gene '" +
                             std::string(r_.gene_ids()[static_cast<size_t>(gene)]) +
                             "' in dataset '" + r_.meta().datasets[static_cast<size_t>(d)].name +
                             "' does not match its entries (rebuild it)");
  }
  return Status::Ok();
}

bool StoreEntries::DatasetChecked(int64_t gene, int64_t dataset) const {
  const auto bit = static_cast<uint64_t>(gene) * static_cast<uint64_t>(r_.n_datasets()) +
                   static_cast<uint64_t>(dataset);
  const uint64_t word = dataset_good_[bit / 64].load(std::memory_order_acquire);
  return (word >> (bit % 64)) & 1;
}

Status StoreEntries::CheckDatasetEntries(int64_t gene, int64_t dataset) const {
  if (DatasetChecked(gene, dataset)) return Status::Ok();
  const auto d = static_cast<size_t>(dataset);
  CC_RETURN_IF_ERROR(check_range_(*this, gene, DatasetEntries(gene, dataset),
                                  r_.dataset_group_begin()[d], r_.dataset_group_end()[d]));
  MarkDatasetChecked(gene, dataset);
  return Status::Ok();
}

void StoreEntries::MarkDatasetChecked(int64_t gene, int64_t dataset) const {
  const auto bit = static_cast<uint64_t>(gene) * static_cast<uint64_t>(r_.n_datasets()) +
                   static_cast<uint64_t>(dataset);
  dataset_good_[bit / 64].fetch_or(uint64_t{1} << (bit % 64), std::memory_order_release);
}

bool StoreEntries::ChecksByDataset(size_t n_datasets_read) const {
  // Beyond a few datasets, a scan's search for each dataset's entries costs more than
  // the check of the whole gene saves.
  constexpr size_t kMaxDatasets = 4;
  const size_t n_datasets = static_cast<size_t>(r_.n_datasets());
  if (r_.dataset_group_begin().empty() || n_datasets_read > kMaxDatasets ||
      n_datasets_read * 8 > n_datasets)
    return false;
  std::call_once(dataset_bits_made_, [&] {
    const uint64_t bits = static_cast<uint64_t>(r_.n_genes()) * n_datasets;
    dataset_good_ = std::make_unique<std::atomic<uint64_t>[]>(bits / 64 + 1);
  });
  return true;
}

Status StoreEntries::CheckIndices(const std::vector<int32_t>& genes,
                                  const std::vector<int32_t>& datasets) const {
  for (int32_t d : datasets)
    if (d < 0 || d >= r_.n_datasets()) return Status::Internal("dataset index out of range");
  for (int32_t g : genes)
    if (g < 0 || g >= r_.n_genes()) return Status::Internal("gene index out of range");
  return Status::Ok();
}

Status StoreEntries::CheckEntries(const std::vector<int32_t>& genes,
                                  const std::vector<int32_t>& datasets) const {
  CC_RETURN_IF_ERROR(CheckIndices(genes, datasets));
  const bool by_dataset = ChecksByDataset(datasets.size());
  // Genes not wholly checked yet, and about how many entries their check reads: many
  // are checked on the pool.
  std::vector<int32_t> pending;
  int64_t entries = 0;
  for (int32_t g : genes) {
    if (GeneChecked(g)) continue;
    pending.push_back(g);
    const int64_t in_gene = a_.indptr.IntAt(g + 1) - a_.indptr.IntAt(g);
    entries += by_dataset ? in_gene * static_cast<int64_t>(datasets.size()) / r_.n_datasets() + 64
                          : in_gene;
  }
  auto check = [&](int32_t g) {
    if (!by_dataset) return CheckGene(g);
    for (int32_t d : datasets)
      if (r_.Measured(d, g)) CC_RETURN_IF_ERROR(CheckDatasetEntries(g, d));
    return Status::Ok();
  };
  constexpr int64_t kWorthThreads = int64_t{1} << 20;
  const auto cores = static_cast<size_t>(Cores());
  if (entries >= kWorthThreads && cores > 1 && pending.size() > 1)
    ParallelFor(pending.size(), static_cast<int>(cores), 64,
                [&](int, size_t i) { (void)check(pending[i]); });
  // The verdicts are known now: the first damaged gene, in the order asked, is the error.
  for (int32_t g : pending) CC_RETURN_IF_ERROR(check(g));
  return Status::Ok();
}

bool StoreEntries::CopyPays(size_t n_genes_read, const std::vector<int32_t>& datasets) const {
  // Below this many genes, the pages a read faults in are few; above the budget, a
  // copy would hold too much of the store.
  constexpr size_t kCopyWorthGenes = 1024;
  if (n_genes_read < kCopyWorthGenes || !ChecksByDataset(datasets.size()) || fd_ < 0 ||
      arrays_mapped() != 5)
    return false;
  // The datasets' share of the entries, by their groups times the genes they measured.
  const StoreData& m = r_.meta();
  double mine = 0, all = 0;
  for (size_t d = 0; d < m.datasets.size(); ++d) {
    const double weight =
        static_cast<double>(r_.dataset_group_end()[d] - r_.dataset_group_begin()[d]) *
        static_cast<double>(m.datasets[d].n_genes);
    all += weight;
    if (std::find(datasets.begin(), datasets.end(), static_cast<int32_t>(d)) != datasets.end())
      mine += weight;
  }
  constexpr double kBytesPerEntry = 18;
  return all > 0 && static_cast<double>(n_entries_) * (mine / all) * kBytesPerEntry <=
                        static_cast<double>(kCopyBudgetBytes);
}

Result<std::shared_ptr<const EntryCopy>> StoreEntries::CopyOf(
    const std::vector<int32_t>& datasets) const {
  Copies& c = *copies_;
  {
    std::lock_guard<std::mutex> lock(c.mu);
    for (size_t i = 0; i < c.list.size(); ++i)
      if (c.list[i].datasets == datasets) {
        std::rotate(c.list.begin(), c.list.begin() + static_cast<ptrdiff_t>(i),
                    c.list.begin() + static_cast<ptrdiff_t>(i) + 1);
        return c.list.front().copy;
      }
  }
  // Every gene the datasets measured, so that the next read of them finds it here.
  std::vector<int32_t> genes;
  for (int64_t g = 0; g < r_.n_genes(); ++g)
    for (int32_t d : datasets)
      if (r_.Measured(d, g)) {
        genes.push_back(static_cast<int32_t>(g));
        break;
      }
  auto copy = std::make_shared<EntryCopy>();
  Status filled = copy->Fill(*this, fd_, map_, genes, datasets);
  if (filled.code() == StatusCode::kCorrupt) return std::shared_ptr<const EntryCopy>();
  CC_RETURN_IF_ERROR(filled);
  for (int32_t g : genes)
    for (int32_t d : datasets)
      if (r_.Measured(d, g)) MarkDatasetChecked(g, d);
  std::lock_guard<std::mutex> lock(c.mu);
  c.list.insert(c.list.begin(), Copies::Copy{datasets, copy});
  size_t kept = 0;
  for (size_t i = 0; i < c.list.size(); ++i) {
    kept += c.list[i].copy->bytes();
    if (kept > kCopyBudgetBytes && i > 0) {
      c.list.resize(i);
      break;
    }
  }
  return std::shared_ptr<const EntryCopy>(copy);
}

Result<EntryRead> StoreEntries::PrepareRead(const std::vector<int32_t>& genes,
                                            const std::vector<int32_t>& datasets,
                                            bool histograms) const {
  CC_ASSIGN_OR_RETURN(EntryRead read, PrepareEntries(genes, datasets));
  if (!histograms) return read;
  CC_RETURN_IF_ERROR(CheckHistograms(genes, datasets));
  read.hist_ = &hist_;
  return read;
}

Result<EntryRead> StoreEntries::PrepareEntries(const std::vector<int32_t>& genes,
                                               const std::vector<int32_t>& datasets) const {
  EntryRead read;
  read.entries_ = this;
  if (CopyPays(genes.size(), datasets)) {
    CC_RETURN_IF_ERROR(CheckIndices(genes, datasets));  // else CheckEntries checks them
    // One copy per set of datasets, whatever order a read names them in.
    const std::vector<int64_t>& first = r_.dataset_group_begin();
    std::vector<int32_t> ordered(datasets);
    std::sort(ordered.begin(), ordered.end(), [&](int32_t a, int32_t b) {
      return first[static_cast<size_t>(a)] < first[static_cast<size_t>(b)];
    });
    ordered.erase(std::unique(ordered.begin(), ordered.end()), ordered.end());
    CC_ASSIGN_OR_RETURN(std::shared_ptr<const EntryCopy> copy, CopyOf(ordered));
    // A copy that met damage is not kept: the read is then checked in place, so that
    // it fails only when it reads the damage.
    if (copy) {
      read.arrays_ = copy->arrays();
      read.copy_ = std::move(copy);
      return read;
    }
  }
  CC_RETURN_IF_ERROR(CheckEntries(genes, datasets));
  read.arrays_ = a_;
  return read;
}

Status StoreEntries::CheckAllGenes() const {
  std::vector<int32_t> all_genes(static_cast<size_t>(r_.n_genes()));
  for (size_t g = 0; g < all_genes.size(); ++g) all_genes[g] = static_cast<int32_t>(g);
  std::vector<int32_t> all_datasets(static_cast<size_t>(r_.n_datasets()));
  for (size_t d = 0; d < all_datasets.size(); ++d) all_datasets[d] = static_cast<int32_t>(d);
  CC_RETURN_IF_ERROR(CheckEntries(all_genes, all_datasets));
  if (!hist_.present()) return Status::Ok();
  return CheckHistograms(all_genes, all_datasets);
}

}  // namespace cellcube
