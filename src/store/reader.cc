// StoreReader: maps a store, validates its metadata and arrays at open and each gene's
// entries when first read (see include/cellcube/store_reader.h). HDF5 is used only
// inside Open, through the h5ad reader, for the metadata and the arrays' file offsets.
#include "cellcube/store_reader.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>
#include <mutex>
#include <thread>

#include "cellcube/h5ad.h"
#include "store/entry_check.h"
#include "store/entry_rules.h"
#include "store/store_layout.h"
#include "store/store_loader.h"
#include "util/isolate.h"
#include "util/parallel.h"

namespace cellcube {

const char* ArrayTypeName(ArrayType t) {
  switch (t) {
    case ArrayType::kInt32:
      return "int32";
    case ArrayType::kInt64:
      return "int64";
    case ArrayType::kUInt16:
      return "uint16";
    case ArrayType::kUInt32:
      return "uint32";
    case ArrayType::kFloat32:
      return "float32";
    case ArrayType::kFloat64:
      return "float64";
  }
  return "?";
}

namespace {

using h5ad::File;

size_t Width(ArrayType t) {
  if (t == ArrayType::kUInt16) return 2;
  return t == ArrayType::kInt64 || t == ArrayType::kFloat64 ? 8 : 4;
}

bool ParseType(const std::string& dtype, ArrayType* out) {
  if (dtype == "int32")
    *out = ArrayType::kInt32;
  else if (dtype == "int64")
    *out = ArrayType::kInt64;
  else if (dtype == "uint16")
    *out = ArrayType::kUInt16;
  else if (dtype == "uint32")
    *out = ArrayType::kUInt32;
  else if (dtype == "float32")
    *out = ArrayType::kFloat32;
  else if (dtype == "float64")
    *out = ArrayType::kFloat64;
  else
    return false;
  return true;
}

std::string Join(const std::vector<ArrayType>& types) {
  std::string out;
  for (size_t i = 0; i < types.size(); ++i)
    out += std::string(i ? (i + 1 == types.size() ? " or " : ", ") : "") + ArrayTypeName(types[i]);
  return out;
}

Status Broken(const std::string& what) { return Status::Corrupt(what); }

// Writes `values` as Out into `dst` (sized for them): the arrays a tool re-saved in a
// form that cannot be mapped, read through HDF5 and narrowed to their stored type.
template <typename Out, typename In>
void CopyAs(const std::vector<In>& values, uint64_t* dst) {
  auto* out = reinterpret_cast<Out*>(dst);
  for (size_t i = 0; i < values.size(); ++i) out[i] = static_cast<Out>(values[i]);
}

// Checks entries `range` of `gene` in place: their groups lie in [group_begin,
// group_end), and the entries on either side hold none of them. Compiled per layout.
template <typename Index, typename Nnz, typename Sum, typename Second>
Status CheckEntryRange(const StoreReader& r, int64_t gene, StoreReader::EntryRange range,
                       int64_t group_begin, int64_t group_end) {
  const int64_t gene_begin = r.indptr().IntAt(gene);
  const int64_t n = r.indptr().IntAt(gene + 1) - gene_begin;
  const Index* idx = r.indices().As<Index>() + gene_begin;
  const StoreReader::EntryRange local{range.begin - gene_begin, range.end - gene_begin};
  entry_check::Fault fault = entry_check::NeighbourFault(idx, n, local, group_begin, group_end);
  if (fault.at < 0) {
    fault = entry_check::SpanFault(r, gene, idx + local.begin, r.nnz().As<Nnz>() + range.begin,
                                   r.sum().As<Sum>() + range.begin,
                                   r.second_moment().As<Second>() + range.begin,
                                   local.end - local.begin, group_begin, group_end);
    if (fault.at >= 0) fault.at += local.begin;
  }
  if (fault.at < 0) return Status::Ok();
  return entry_check::Damaged(r, gene, gene_begin + fault.at, fault.why);
}

}  // namespace

struct StoreReader::Storage {
  void* map = nullptr;
  size_t map_bytes = 0;
  std::vector<std::vector<uint64_t>> owned;  // arrays read into memory (8-byte aligned)
  // Per (gene, dataset), gene-major, a bit: its entries checked good. Made on the first
  // check by dataset, so an open pays nothing for it.
  std::once_flag dataset_bits_made;
  std::unique_ptr<std::atomic<uint64_t>[]> dataset_good;
  int fd = -1;  // the mapped file, for EntryCopy's reads
  // Copies of some datasets' entries (PrepareRead), most recently used first.
  struct Copy {
    std::vector<int32_t> datasets;
    std::shared_ptr<const EntryCopy> copy;
  };
  std::mutex copies_mu;
  std::vector<Copy> copies;

  ~Storage() {
    if (map) ::munmap(map, map_bytes);
    if (fd >= 0) ::close(fd);
  }
};

StoreReader::StoreReader() : storage_(std::make_unique<Storage>()) {}

struct StoreReader::Internals {
  StoreReader* r;
  const File* file;

  // One of the five arrays: in place when possible, else read into memory.
  Result<ArrayView> Load(const std::string& dataset, const std::vector<ArrayType>& allowed,
                         int64_t expected_elements, const char* expected_from) {
    CC_ASSIGN_OR_RETURN(File::Extent e, file->Locate(dataset));
    ArrayType type{};
    bool known = ParseType(e.dtype, &type);
    bool ok = false;
    for (ArrayType t : allowed) ok |= known && t == type;
    if (!ok)
      return Broken("'" + dataset + "' holds " + e.dtype + " values; a store has " + Join(allowed));
    if (expected_elements >= 0 && e.elements != expected_elements)
      return Broken("'" + dataset + "' has " + std::to_string(e.elements) + " values, " +
                    expected_from + " says " + std::to_string(expected_elements));
    ArrayView v;
    v.type = type;
    v.size = e.elements;
    const uint64_t width = Width(type);
    if (e.in_place && std::endian::native == std::endian::little) {
      if (e.bytes != static_cast<uint64_t>(e.elements) * width)
        return Broken("'" + dataset + "' has " + std::to_string(e.bytes) + " bytes for " +
                      std::to_string(e.elements) + " " + e.dtype + " values");
      if (e.offset > r->file_size_ || e.bytes > r->file_size_ - e.offset)
        return Broken("'" + dataset + "' lies outside the file (bytes " + std::to_string(e.offset) +
                      " to " + std::to_string(e.offset + e.bytes) + " of a " +
                      std::to_string(r->file_size_) + "-byte file)");
      const char* p = static_cast<const char*>(r->storage_->map) + e.offset;
      if (e.offset % width == 0) {
        v.data = p;
        v.mapped = true;
        return v;
      }
      auto& buf = r->storage_->owned.emplace_back((e.bytes + 7) / 8);
      if (e.bytes) std::memcpy(buf.data(), p, e.bytes);
      v.data = buf.data();
      return v;
    }
    // Not in place (chunked, compressed, big-endian): read through the h5ad reader.
    auto& buf =
        r->storage_->owned.emplace_back((static_cast<uint64_t>(e.elements) * width + 7) / 8);
    v.data = buf.data();
    if (type == ArrayType::kFloat32 || type == ArrayType::kFloat64) {
      CC_ASSIGN_OR_RETURN(auto values, file->ReadDoubles(dataset));
      if (static_cast<int64_t>(values.size()) != e.elements)
        return Broken("'" + dataset + "' could not be read whole");
      if (type == ArrayType::kFloat64)
        CopyAs<double>(values, buf.data());
      else
        CopyAs<float>(values, buf.data());
      return v;
    }
    CC_ASSIGN_OR_RETURN(auto values, file->ReadIntegers(dataset));
    if (static_cast<int64_t>(values.size()) != e.elements)
      return Broken("'" + dataset + "' could not be read whole");
    if (type == ArrayType::kInt64)
      CopyAs<int64_t>(values, buf.data());
    else if (type == ArrayType::kInt32)
      CopyAs<int32_t>(values, buf.data());
    else if (type == ArrayType::kUInt16)
      CopyAs<uint16_t>(values, buf.data());
    else
      CopyAs<uint32_t>(values, buf.data());
    return v;
  }

  // The sum and sumsq layers must share the nnz layer's pattern: the same object (hard
  // links, as cellcube writes them) or equal copies (as a tool re-saving them writes).
  Status CheckSamePattern(const std::string& dataset, const ArrayView& reference) {
    CC_ASSIGN_OR_RETURN(File::Extent e, file->Locate(dataset));
    if (e.in_place && reference.mapped &&
        static_cast<const char*>(r->storage_->map) + e.offset == reference.data)
      return Status::Ok();
    const size_t mark = r->storage_->owned.size();
    CC_ASSIGN_OR_RETURN(ArrayView copy,
                        Load(dataset, {reference.type}, reference.size, "the nnz layer"));
    bool same = reference.size == 0 ||
                std::memcmp(copy.data, reference.data,
                            static_cast<size_t>(reference.size) * Width(reference.type)) == 0;
    r->storage_->owned.resize(mark);  // drop the copy if it was read into memory
    if (!same) return Broken("'" + dataset + "' differs from the nnz layer's");
    return Status::Ok();
  }

  // indptr as a whole (O(genes)): monotone from 0 to the number of entries, so every
  // gene's entries lie inside the arrays.
  Status CheckIndptr() {
    const int64_t n_genes = r->n_genes();
    if (r->indptr_.IntAt(0) != 0) return Broken("layers/nnz/indptr does not start at 0");
    for (int64_t g = 0; g < n_genes; ++g) {
      const int64_t begin = r->indptr_.IntAt(g), end = r->indptr_.IntAt(g + 1);
      if (end < begin || end > r->n_entries_)
        return Broken("layers/nnz/indptr is not ascending from 0 to the number of entries (gene " +
                      std::to_string(g) + ")");
    }
    return Status::Ok();
  }

  void IndexDatasets() {
    const StoreData& m = r->meta_;
    const auto n_datasets = static_cast<size_t>(r->n_datasets());
    // Group ranges per dataset, when each dataset's groups are consecutive.
    std::vector<int64_t> begin(n_datasets, -1), end(n_datasets, -1);
    bool consecutive = true;
    const auto& ds = m.codes[0];
    for (size_t g = 0; g < ds.size() && consecutive; ++g) {
      const auto d = static_cast<size_t>(ds[g]);
      if (begin[d] < 0) {
        begin[d] = static_cast<int64_t>(g);
      } else if (end[d] != static_cast<int64_t>(g)) {
        consecutive = false;
      }
      end[d] = static_cast<int64_t>(g) + 1;
    }
    if (!consecutive) return;
    for (size_t d = 0; d < n_datasets; ++d)
      if (begin[d] < 0) begin[d] = end[d] = 0;
    r->dataset_begin_ = std::move(begin);
    r->dataset_end_ = std::move(end);
  }

  // `hdf5_only`: stop after everything that calls HDF5, before the entry checks (the
  // isolated probe of Open only needs to know that HDF5 survives the file).
  static Result<std::shared_ptr<const StoreReader>> OpenOnce(const std::string& path,
                                                             bool hdf5_only, bool* replaced);

  Status Run(const File& f, bool hdf5_only) {
    file = &f;
    MetadataOptions options;
    options.names = MetadataOptions::Names::kLists;
    options.map = {static_cast<const char*>(r->storage_->map), r->storage_->map_bytes};
    CC_ASSIGN_OR_RETURN(StoreMetadata loaded, LoadStoreMetadata(f, options));
    r->meta_ = std::move(loaded.meta);
    r->measured_ = std::move(loaded.measured);
    r->gene_ids_ = std::move(loaded.gene_ids);
    r->gene_symbols_ = std::move(loaded.gene_symbols);
    r->format_version_ = loaded.format_version;
    IndexDatasets();
    const EntryArrayNames names = EntryArraysOf(r->format_version_);
    const bool v1 = r->format_version_ == 1;
    const std::vector<ArrayType> ints = {ArrayType::kInt32, ArrayType::kInt64};
    const std::vector<ArrayType> nnz_types =
        v1 ? std::vector<ArrayType>{ArrayType::kUInt32}
           : std::vector<ArrayType>{ArrayType::kUInt16, ArrayType::kUInt32};
    // cellcube writes float64 sums and float32 m2; a tool that re-saved the store with
    // other float widths still reads (format 1's two sums share one type).
    const std::vector<ArrayType> floats = {ArrayType::kFloat32, ArrayType::kFloat64};
    const char* by_indptr = "the end of layers/nnz/indptr";
    CC_ASSIGN_OR_RETURN(r->indptr_,
                        Load(names.indptr, ints, r->n_genes() + 1, "the number of genes + 1"));
    r->n_entries_ = r->indptr_.IntAt(r->n_genes());
    if (r->n_entries_ < 0) return Broken(names.indptr + " ends below 0");
    CC_ASSIGN_OR_RETURN(r->indices_,
                        Load(names.indices, {r->indptr_.type}, r->n_entries_, by_indptr));
    CC_ASSIGN_OR_RETURN(r->nnz_, Load(names.nnz, nnz_types, r->n_entries_, by_indptr));
    CC_ASSIGN_OR_RETURN(r->sum_, Load(names.sum, floats, r->n_entries_, by_indptr));
    CC_ASSIGN_OR_RETURN(r->second_,
                        Load(names.second, v1 ? std::vector<ArrayType>{r->sum_.type} : floats,
                             r->n_entries_, by_indptr));
    CC_RETURN_IF_ERROR(CheckSamePattern(names.sum_indptr, r->indptr_));
    CC_RETURN_IF_ERROR(CheckSamePattern(names.sum_indices, r->indices_));
    CC_RETURN_IF_ERROR(CheckSamePattern(names.second_indptr, r->indptr_));
    CC_RETURN_IF_ERROR(CheckSamePattern(names.second_indices, r->indices_));
    if (hdf5_only) return Status::Ok();
    CC_RETURN_IF_ERROR(CheckIndptr());
    r->gene_verdict_ = std::make_unique<std::atomic<uint8_t>[]>(static_cast<size_t>(r->n_genes()));
    r->check_range_ = VisitEntryTypes(*r, [](auto index, auto nnz, auto sum, auto second) {
      return &CheckEntryRange<decltype(index), decltype(nnz), decltype(sum), decltype(second)>;
    });
    return Status::Ok();
  }
};

// Opens, maps and validates once; `replaced` is set when the path was renamed over
// while it was being read (the caller then tries again).
Result<std::shared_ptr<const StoreReader>> StoreReader::Internals::OpenOnce(const std::string& path,
                                                                            bool hdf5_only,
                                                                            bool* replaced) {
  *replaced = false;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT) return Status::NotFound("no store at '" + path + "' (no such file)");
    return Status::IoError("cannot open '" + path + "': " + std::strerror(err));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return Status::InvalidArgument("'" + path + "' is not a regular file");
  }
  std::shared_ptr<StoreReader> r(new StoreReader());
  r->path_ = path;
  r->file_size_ = static_cast<uint64_t>(st.st_size);
  r->file_inode_ = static_cast<uint64_t>(st.st_ino);
  r->file_mtime_ns_ = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  if (r->file_size_ > 0) {
    void* map = ::mmap(nullptr, r->file_size_, PROT_READ, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      return Status::IoError("cannot map '" + path + "': " + std::strerror(err));
    }
    r->storage_->map = map;
    r->storage_->map_bytes = r->file_size_;
  }
  r->storage_->fd = fd;

  auto file = File::Open(path);
  if (!file.ok()) return file.status();
  StoreReader::Internals in{r.get(), nullptr};
  Status s = in.Run(**file, hdf5_only);
  // Was the path replaced while we read it? Then HDF5 may have read another file.
  struct stat now {};
  if (::stat(path.c_str(), &now) != 0 || now.st_ino != st.st_ino || now.st_dev != st.st_dev) {
    *replaced = true;
    return Status::IoError("'" + path + "' kept being replaced while it was opened");
  }
  if (!s.ok()) return s.WithContext("store '" + path + "'");
  return std::shared_ptr<const StoreReader>(std::move(r));
}

namespace {

bool SameFile(const struct stat& a, const StoreReader& r) {
  return static_cast<uint64_t>(a.st_ino) == r.file_inode() &&
         static_cast<uint64_t>(a.st_size) == r.file_size() &&
         static_cast<int64_t>(a.st_mtim.tv_sec) * 1000000000 + a.st_mtim.tv_nsec ==
             r.file_mtime_ns();
}

}  // namespace

Result<std::shared_ptr<const StoreReader>> StoreReader::Open(const std::string& path,
                                                             const StoreOpenOptions& options) {
  const auto OpenInProcess = [](const std::string& file, bool hdf5_only = false) {
    bool replaced = false;
    for (int attempt = 0;; ++attempt) {
      auto r = Internals::OpenOnce(file, hdf5_only, &replaced);
      if (!replaced || attempt == 4) return r;
    }
  };
  if (!options.isolate) return OpenInProcess(path);
  for (int attempt = 0;; ++attempt) {
    struct stat before {};
    if (::stat(path.c_str(), &before) != 0) return OpenInProcess(path);  // its own error
    uint64_t limit = options.memory_limit;
    if (limit == 0) {
      CC_ASSIGN_OR_RETURN(limit, DefaultMemoryLimit());
    }
    // The child makes every HDF5 call of the open on the same bytes: if it survives, so
    // do we. (The entry checks, cellcube's own code and most of the time, run here only.)
    IsolationOptions isolation;
    isolation.memory_limit = limit;
    isolation.crash_advice = h5ad::kCrashedReaderAdvice;
    isolation.stuck_after_ms = 300;  // sanitizer builds: see IsolationOptions
    CC_RETURN_IF_ERROR(
        RunIsolated([&] { return OpenInProcess(path, /*hdf5_only=*/true).status(); }, isolation));
    CC_ASSIGN_OR_RETURN(auto reader, OpenInProcess(path));
    // Replaced between the child's open and ours: check the new file the same way.
    if (SameFile(before, *reader) || attempt == 4) return reader;
  }
}

StoreReader::~StoreReader() = default;

int StoreReader::arrays_mapped() const {
  return indptr_.mapped + indices_.mapped + nnz_.mapped + sum_.mapped + second_.mapped;
}

namespace {
constexpr uint8_t kUnchecked = 0, kGood = 1, kDamaged = 2;
}  // namespace

Status StoreReader::CheckGene(int64_t gene) const {
  if (gene < 0 || gene >= n_genes()) return Status::Internal("gene index out of range");
  std::atomic<uint8_t>& verdict = gene_verdict_[static_cast<size_t>(gene)];
  const uint8_t known = verdict.load(std::memory_order_acquire);
  if (known == kGood) return Status::Ok();
  // Unchecked, or damaged (checked again for the message: it is rare and cheap).
  const EntryRange all{indptr_.IntAt(gene), indptr_.IntAt(gene + 1)};
  Status s = check_range_(*this, gene, all, 0, n_groups());
  if (known == kUnchecked) verdict.store(s.ok() ? kGood : kDamaged, std::memory_order_release);
  return s;
}

bool StoreReader::GeneChecked(int64_t gene) const {
  return gene_verdict_[static_cast<size_t>(gene)].load(std::memory_order_acquire) == kGood;
}

StoreReader::EntryRange StoreReader::DatasetEntries(int64_t gene, int64_t dataset) const {
  if (dataset_begin_.empty()) return {};
  const int64_t begin = indptr_.IntAt(gene), n = indptr_.IntAt(gene + 1) - begin;
  const auto d = static_cast<size_t>(dataset);
  const EntryRange local = indices_.type == ArrayType::kInt64
                               ? entry_check::LocateGroups(indices_.As<int64_t>() + begin, n,
                                                           dataset_begin_[d], dataset_end_[d])
                               : entry_check::LocateGroups(indices_.As<int32_t>() + begin, n,
                                                           dataset_begin_[d], dataset_end_[d]);
  return {begin + local.begin, begin + local.end};
}

bool StoreReader::DatasetChecked(int64_t gene, int64_t dataset) const {
  const auto bit = static_cast<uint64_t>(gene) * static_cast<uint64_t>(n_datasets()) +
                   static_cast<uint64_t>(dataset);
  const uint64_t word = storage_->dataset_good[bit / 64].load(std::memory_order_acquire);
  return (word >> (bit % 64)) & 1;
}

Status StoreReader::CheckDatasetEntries(int64_t gene, int64_t dataset) const {
  if (DatasetChecked(gene, dataset)) return Status::Ok();
  const auto d = static_cast<size_t>(dataset);
  CC_RETURN_IF_ERROR(
      check_range_(*this, gene, DatasetEntries(gene, dataset), dataset_begin_[d], dataset_end_[d]));
  MarkDatasetChecked(gene, dataset);
  return Status::Ok();
}

void StoreReader::MarkDatasetChecked(int64_t gene, int64_t dataset) const {
  const auto bit = static_cast<uint64_t>(gene) * static_cast<uint64_t>(n_datasets()) +
                   static_cast<uint64_t>(dataset);
  storage_->dataset_good[bit / 64].fetch_or(uint64_t{1} << (bit % 64), std::memory_order_release);
}

bool StoreReader::ChecksByDataset(size_t n_datasets_read) const {
  // Beyond a few datasets, a scan's search for each dataset's entries costs more than
  // the check of the whole gene saves.
  constexpr size_t kMaxDatasets = 4;
  if (dataset_begin_.empty() || n_datasets_read > kMaxDatasets ||
      n_datasets_read * 8 > meta_.datasets.size())
    return false;
  std::call_once(storage_->dataset_bits_made, [&] {
    const uint64_t bits = static_cast<uint64_t>(n_genes()) * meta_.datasets.size();
    storage_->dataset_good = std::make_unique<std::atomic<uint64_t>[]>(bits / 64 + 1);
  });
  return true;
}

Status StoreReader::CheckRead(const std::vector<int32_t>& genes,
                              const std::vector<int32_t>& datasets) const {
  for (int32_t d : datasets)
    if (d < 0 || d >= n_datasets()) return Status::Internal("dataset index out of range");
  for (int32_t g : genes)
    if (g < 0 || g >= n_genes()) return Status::Internal("gene index out of range");
  return Status::Ok();
}

Status StoreReader::CheckEntries(const std::vector<int32_t>& genes,
                                 const std::vector<int32_t>& datasets) const {
  CC_RETURN_IF_ERROR(CheckRead(genes, datasets));
  const bool by_dataset = ChecksByDataset(datasets.size());
  // Genes not wholly checked yet, and about how many entries their check reads: many
  // are checked on every core.
  std::vector<int32_t> pending;
  int64_t entries = 0;
  for (int32_t g : genes) {
    if (GeneChecked(g)) continue;
    pending.push_back(g);
    const int64_t in_gene = indptr_.IntAt(g + 1) - indptr_.IntAt(g);
    entries +=
        by_dataset ? in_gene * static_cast<int64_t>(datasets.size()) / n_datasets() + 64 : in_gene;
  }
  auto check = [&](int32_t g) {
    if (!by_dataset) return CheckGene(g);
    for (int32_t d : datasets)
      if (Measured(d, g)) CC_RETURN_IF_ERROR(CheckDatasetEntries(g, d));
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

bool StoreReader::CopyPays(size_t n_genes_read, const std::vector<int32_t>& datasets) const {
  // Below this many genes, the pages a read faults in are few; above the budget, a
  // copy would hold too much of the store.
  constexpr size_t kCopyWorthGenes = 1024;
  if (n_genes_read < kCopyWorthGenes || !ChecksByDataset(datasets.size()) || storage_->fd < 0 ||
      arrays_mapped() != 5)
    return false;
  // The datasets' share of the entries, by their groups times the genes they measured.
  double mine = 0, all = 0;
  for (size_t d = 0; d < meta_.datasets.size(); ++d) {
    const double weight = static_cast<double>(dataset_end_[d] - dataset_begin_[d]) *
                          static_cast<double>(meta_.datasets[d].n_genes);
    all += weight;
    if (std::find(datasets.begin(), datasets.end(), static_cast<int32_t>(d)) != datasets.end())
      mine += weight;
  }
  constexpr double kBytesPerEntry = 18;
  return all > 0 && static_cast<double>(n_entries_) * (mine / all) * kBytesPerEntry <=
                        static_cast<double>(kCopyBudgetBytes);
}

Result<std::shared_ptr<const EntryCopy>> StoreReader::CopyOf(
    const std::vector<int32_t>& datasets) const {
  Storage& st = *storage_;
  {
    std::lock_guard<std::mutex> lock(st.copies_mu);
    for (size_t i = 0; i < st.copies.size(); ++i)
      if (st.copies[i].datasets == datasets) {
        std::rotate(st.copies.begin(), st.copies.begin() + static_cast<ptrdiff_t>(i),
                    st.copies.begin() + static_cast<ptrdiff_t>(i) + 1);
        return st.copies.front().copy;
      }
  }
  // Every gene the datasets measured, so that the next read of them finds it here.
  std::vector<int32_t> genes;
  for (int64_t g = 0; g < n_genes(); ++g)
    for (int32_t d : datasets)
      if (Measured(d, g)) {
        genes.push_back(static_cast<int32_t>(g));
        break;
      }
  auto copy = std::make_shared<EntryCopy>();
  Status filled = copy->Fill(*this, st.fd, st.map, genes, datasets);
  if (filled.code() == StatusCode::kCorrupt) return std::shared_ptr<const EntryCopy>();
  CC_RETURN_IF_ERROR(filled);
  for (int32_t g : genes)
    for (int32_t d : datasets)
      if (Measured(d, g)) MarkDatasetChecked(g, d);
  std::lock_guard<std::mutex> lock(st.copies_mu);
  st.copies.insert(st.copies.begin(), Storage::Copy{datasets, copy});
  size_t kept = 0;
  for (size_t i = 0; i < st.copies.size(); ++i) {
    kept += st.copies[i].copy->bytes();
    if (kept > kCopyBudgetBytes && i > 0) {
      st.copies.resize(i);
      break;
    }
  }
  return std::shared_ptr<const EntryCopy>(copy);
}

Result<StoreReader::PreparedRead> StoreReader::PrepareRead(
    const std::vector<int32_t>& genes, const std::vector<int32_t>& datasets) const {
  if (CopyPays(genes.size(), datasets)) {
    CC_RETURN_IF_ERROR(CheckRead(genes, datasets));  // else CheckEntries checks them
    // One copy per set of datasets, whatever order a read names them in.
    std::vector<int32_t> ordered(datasets);
    std::sort(ordered.begin(), ordered.end(), [&](int32_t a, int32_t b) {
      return dataset_begin_[static_cast<size_t>(a)] < dataset_begin_[static_cast<size_t>(b)];
    });
    ordered.erase(std::unique(ordered.begin(), ordered.end()), ordered.end());
    CC_ASSIGN_OR_RETURN(std::shared_ptr<const EntryCopy> copy, CopyOf(ordered));
    // A copy that met damage is not kept: the read is then checked in place, so that
    // it fails only when it reads the damage.
    if (copy) return PreparedRead{copy->arrays(), copy};
  }
  CC_RETURN_IF_ERROR(CheckEntries(genes, datasets));
  return PreparedRead{arrays(), nullptr};
}

Status StoreReader::CheckAllGenes() const {
  std::vector<int32_t> all_genes(static_cast<size_t>(n_genes()));
  for (size_t g = 0; g < all_genes.size(); ++g) all_genes[g] = static_cast<int32_t>(g);
  std::vector<int32_t> all_datasets(meta_.datasets.size());
  for (size_t d = 0; d < all_datasets.size(); ++d) all_datasets[d] = static_cast<int32_t>(d);
  return CheckEntries(all_genes, all_datasets);
}

}  // namespace cellcube
