// StoreReader: opens a store, reads and validates its metadata, and has its entries
// (store_entries.h) map and check their arrays (see include/cellcube/store_reader.h).
// HDF5 is used only inside Open, through the h5ad reader, for the metadata and the
// arrays' file offsets.
#include "cellcube/store_reader.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "cellcube/h5ad.h"
#include "store/store_entries.h"
#include "store/store_loader.h"
#include "util/isolate.h"

namespace cellcube {

namespace {

using h5ad::File;

}  // namespace

StoreReader::StoreReader() : entries_(std::make_unique<StoreEntries>(*this)) {}

struct StoreReader::Internals {
  StoreReader* r;
  const File* file;

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
    options.map = {r->entries_->map(), r->entries_->map_bytes()};
    CC_ASSIGN_OR_RETURN(StoreMetadata loaded, LoadStoreMetadata(f, options));
    r->meta_ = std::move(loaded.meta);
    r->measured_ = std::move(loaded.measured);
    r->gene_ids_ = std::move(loaded.gene_ids);
    r->gene_symbols_ = std::move(loaded.gene_symbols);
    r->format_version_ = loaded.format_version;
    IndexDatasets();
    return r->entries_->Load(f, /*check_indptr=*/!hdf5_only);
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
  if (Status mapped = r->entries_->Map(fd, r->file_size_, path); !mapped.ok()) return mapped;

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
  const auto OpenInProcess = [&options](const std::string& file, bool hdf5_only = false) {
    bool replaced = false;
    for (int attempt = 0;; ++attempt) {
      auto r = Internals::OpenOnce(file, hdf5_only, &replaced);
      if (!replaced || attempt == 4) {
        // Before the reader is shared: its arrays may still move (Preload).
        if (r.ok() && !hdf5_only && options.preload) (*r)->entries_->Preload(options.preload_max);
        return r;
      }
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

int StoreReader::arrays_mapped() const { return entries_->arrays_mapped(); }
const PreloadReport& StoreReader::preload() const { return entries_->preload_report(); }
int64_t StoreReader::n_entries() const { return entries_->n_entries(); }
Status StoreReader::CheckAllGenes() const { return entries_->CheckAllGenes(); }

int64_t StoreReader::GeneEntries(int64_t gene) const {
  return entries_->indptr().IntAt(gene + 1) - entries_->indptr().IntAt(gene);
}

const StoreEntries& EntriesOf(const StoreReader& reader) { return *reader.entries_; }

}  // namespace cellcube
