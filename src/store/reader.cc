// StoreReader: maps a store and validates everything a query relies on (see
// include/cellcube/store_reader.h). HDF5 is used only inside Open, through the h5ad
// reader, for the metadata and the arrays' file offsets.
#include "cellcube/store_reader.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>

#include "cellcube/h5ad.h"
#include "store/store_layout.h"
#include "store/store_loader.h"
#include "util/isolate.h"

namespace cellcube {

const char* ArrayTypeName(ArrayType t) {
  switch (t) {
    case ArrayType::kInt32:
      return "int32";
    case ArrayType::kInt64:
      return "int64";
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

size_t Width(ArrayType t) { return t == ArrayType::kInt64 || t == ArrayType::kFloat64 ? 8 : 4; }

bool ParseType(const std::string& dtype, ArrayType* out) {
  if (dtype == "int32")
    *out = ArrayType::kInt32;
  else if (dtype == "int64")
    *out = ArrayType::kInt64;
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

// Checks the metadata LoadStoreMetadata read: sizes, codes, datasets, measured genes.
Status ValidateMeta(const StoreData& s) {
  if (s.columns.size() < 2 || s.columns[0] != "dataset" || s.columns[1] != "cell_type")
    return Broken("the first obs columns must be 'dataset' and 'cell_type'");
  if (s.labels.size() != s.columns.size() || s.codes.size() != s.columns.size())
    return Broken("obs columns without labels or codes");
  const int64_t groups = s.n_groups();
  if (groups >= std::numeric_limits<int32_t>::max()) return Broken("too many groups");
  for (size_t c = 0; c < s.columns.size(); ++c) {
    if (static_cast<int64_t>(s.codes[c].size()) != groups)
      return Broken("obs column '" + s.columns[c] + "' has " + std::to_string(s.codes[c].size()) +
                    " rows, obs/n_cells has " + std::to_string(groups));
    const auto n_labels = static_cast<int64_t>(s.labels[c].size());
    for (int32_t code : s.codes[c])
      if (code < -1 || code >= n_labels || (c == 0 && code < 0))
        return Broken("obs column '" + s.columns[c] + "' has a code out of range");
    for (size_t k = 0; k < c; ++k)
      if (s.columns[k] == s.columns[c]) return Broken("obs column '" + s.columns[c] + "' twice");
  }
  if (s.datasets.size() != s.labels[0].size())
    return Broken("uns/cellcube/datasets has " + std::to_string(s.datasets.size()) +
                  " rows but obs 'dataset' has " + std::to_string(s.labels[0].size()) +
                  " categories");
  for (size_t d = 0; d < s.datasets.size(); ++d)
    if (s.datasets[d].name != s.labels[0][d])
      return Broken("dataset '" + s.datasets[d].name +
                    "' of uns/cellcube/datasets is not obs "
                    "'dataset' category " +
                    std::to_string(d));
  for (int64_t n : s.n_cells)
    if (n <= 0) return Broken("obs/n_cells has a group without cells");
  if (s.gene_symbols.size() != s.gene_ids.size())
    return Broken("var 'symbol' and the var index have different lengths");
  if (s.gene_ids.size() >= static_cast<size_t>(std::numeric_limits<int32_t>::max()))
    return Broken("too many genes");
  for (const auto& d : s.datasets)
    for (size_t k = 0; k < d.measured_genes.size(); ++k) {
      int32_t g = d.measured_genes[k];
      if (g < 0 || g >= s.n_genes() || (k && g <= d.measured_genes[k - 1]))
        return Broken("uns/cellcube/measured_genes of dataset '" + d.name +
                      "' are out of range or not ascending");
    }
  return Status::Ok();
}

}  // namespace

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
      const char* p = static_cast<const char*>(r->map_) + e.offset;
      if (e.offset % width == 0) {
        v.data = p;
        v.mapped = true;
        return v;
      }
      auto& buf = r->owned_.emplace_back((e.bytes + 7) / 8);
      if (e.bytes) std::memcpy(buf.data(), p, e.bytes);
      v.data = buf.data();
      return v;
    }
    // Not in place (chunked, compressed, big-endian): read through the h5ad reader.
    auto& buf = r->owned_.emplace_back((static_cast<uint64_t>(e.elements) * width + 7) / 8);
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
    else
      CopyAs<uint32_t>(values, buf.data());
    return v;
  }

  // The sum and sumsq layers must share the nnz layer's pattern: the same object (hard
  // links, as cellcube writes them) or equal copies (as a tool re-saving them writes).
  Status CheckSamePattern(const std::string& dataset, const ArrayView& reference) {
    CC_ASSIGN_OR_RETURN(File::Extent e, file->Locate(dataset));
    if (e.in_place && reference.mapped &&
        static_cast<const char*>(r->map_) + e.offset == reference.data)
      return Status::Ok();
    const size_t mark = r->owned_.size();
    CC_ASSIGN_OR_RETURN(ArrayView copy,
                        Load(dataset, {reference.type}, reference.size, "the nnz layer"));
    bool same = reference.size == 0 ||
                std::memcmp(copy.data, reference.data,
                            static_cast<size_t>(reference.size) * Width(reference.type)) == 0;
    r->owned_.resize(mark);  // drop the copy if it was read into memory
    if (!same) return Broken("'" + dataset + "' differs from the nnz layer's");
    return Status::Ok();
  }

  template <typename Index, typename Value>
  Status CheckEntries() {
    const int64_t n_genes = r->n_genes();
    const int64_t n_groups = r->n_groups();
    const auto* idx = r->indices_.As<Index>();
    const auto* nnz = r->nnz_.As<uint32_t>();
    const auto* sum = r->sum_.As<Value>();
    const auto* sumsq = r->sumsq_.As<Value>();
    const auto& group_dataset = r->meta_.codes[0];
    const auto& n_cells = r->meta_.n_cells;
    int64_t prev_end = 0;
    for (int64_t g = 0; g < n_genes; ++g) {
      const int64_t begin = r->indptr_.IntAt(g), end = r->indptr_.IntAt(g + 1);
      if (begin != prev_end || end < begin || end > r->n_entries_)
        return Broken(
            "layers/nnz/indptr is not ascending from 0 to the number of entries "
            "(gene " +
            std::to_string(g) + ")");
      prev_end = end;
      int64_t last = -1;
      for (int64_t k = begin; k < end; ++k) {
        const int64_t row = idx[k];
        if (row <= last || row >= n_groups)
          return Broken("layers/nnz/indices: entry " + std::to_string(k) + " (gene " +
                        std::to_string(g) + ") has group " + std::to_string(row) +
                        (row >= n_groups || row < 0 ? ", out of range" : ", not ascending"));
        last = row;
        if (!r->Measured(group_dataset[static_cast<size_t>(row)], g))
          return Broken("entry " + std::to_string(k) + " lies in gene '" + r->meta_.gene_ids[g] +
                        "', which its group's dataset did not measure");
        if (nnz[k] > static_cast<uint64_t>(n_cells[static_cast<size_t>(row)]))
          return Broken("layers/nnz: entry " + std::to_string(k) + " counts " +
                        std::to_string(nnz[k]) + " cells in a group of " +
                        std::to_string(n_cells[static_cast<size_t>(row)]));
        if (!std::isfinite(sum[k]) || !std::isfinite(sumsq[k]) || sumsq[k] < 0)
          return Broken("layers/sum or layers/sumsq: entry " + std::to_string(k) +
                        " is not a finite sum");
      }
    }
    if (prev_end != r->n_entries_)
      return Broken("layers/nnz/indptr does not end at the number of entries");
    return Status::Ok();
  }

  Status CheckEntriesDispatch() {
    const bool wide_index = r->indices_.type == ArrayType::kInt64;
    const bool wide_value = r->sum_.type == ArrayType::kFloat64;
    if (wide_index)
      return wide_value ? CheckEntries<int64_t, double>() : CheckEntries<int64_t, float>();
    return wide_value ? CheckEntries<int32_t, double>() : CheckEntries<int32_t, float>();
  }

  void IndexDatasets() {
    const StoreData& m = r->meta_;
    const auto n_datasets = static_cast<size_t>(r->n_datasets());
    r->measured_bits_ = MeasuredGeneBits(m);
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
    CC_RETURN_IF_ERROR(LoadStoreMetadata(f, &r->meta_));
    CC_RETURN_IF_ERROR(ValidateMeta(r->meta_));
    IndexDatasets();
    const std::string layers = store_layout::kLayersGroup;
    const std::string nnz = layers + "/" + store_layout::kLayerNnz;
    const std::string sum = layers + "/" + store_layout::kLayerSum;
    const std::string sumsq = layers + "/" + store_layout::kLayerSumsq;
    const std::vector<ArrayType> ints = {ArrayType::kInt32, ArrayType::kInt64};
    const std::vector<ArrayType> floats = {ArrayType::kFloat32, ArrayType::kFloat64};
    const char* by_indptr = "the end of layers/nnz/indptr";
    CC_ASSIGN_OR_RETURN(r->indptr_,
                        Load(nnz + "/indptr", ints, r->n_genes() + 1, "the number of genes + 1"));
    if (r->indptr_.IntAt(0) != 0) return Broken(nnz + "/indptr does not start at 0");
    r->n_entries_ = r->indptr_.IntAt(r->n_genes());
    if (r->n_entries_ < 0) return Broken(nnz + "/indptr ends below 0");
    CC_ASSIGN_OR_RETURN(r->indices_, Load(nnz + "/indices", ints, r->n_entries_, by_indptr));
    CC_ASSIGN_OR_RETURN(r->nnz_,
                        Load(nnz + "/data", {ArrayType::kUInt32}, r->n_entries_, by_indptr));
    CC_ASSIGN_OR_RETURN(r->sum_, Load(sum + "/data", floats, r->n_entries_, by_indptr));
    CC_ASSIGN_OR_RETURN(r->sumsq_, Load(sumsq + "/data", {r->sum_.type}, r->n_entries_, by_indptr));
    for (const std::string& layer : {sum, sumsq}) {
      CC_RETURN_IF_ERROR(CheckSamePattern(layer + "/indptr", r->indptr_));
      CC_RETURN_IF_ERROR(CheckSamePattern(layer + "/indices", r->indices_));
    }
    return hdf5_only ? Status::Ok() : CheckEntriesDispatch();
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
    r->map_ = map;
    r->map_bytes_ = r->file_size_;
  }
  ::close(fd);

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
      CC_ASSIGN_OR_RETURN(limit, MemoryLimitFor(static_cast<uint64_t>(before.st_size)));
    }
    // The child makes every HDF5 call of the open on the same bytes: if it survives, so
    // do we. (The entry checks, cellcube's own code and most of the time, run here only.)
    IsolationOptions isolation;
    isolation.memory_limit = limit;
    CC_RETURN_IF_ERROR(
        RunIsolated([&] { return OpenInProcess(path, /*hdf5_only=*/true).status(); }, isolation));
    CC_ASSIGN_OR_RETURN(auto reader, OpenInProcess(path));
    // Replaced between the child's open and ours: check the new file the same way.
    if (SameFile(before, *reader) || attempt == 4) return reader;
  }
}

StoreReader::~StoreReader() {
  if (map_) ::munmap(map_, map_bytes_);
}

int StoreReader::arrays_mapped() const {
  return indptr_.mapped + indices_.mapped + nnz_.mapped + sum_.mapped + sumsq_.mapped;
}

}  // namespace cellcube
