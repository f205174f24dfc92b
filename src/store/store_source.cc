#include "store/store_source.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <numeric>

#include "cellcube/h5ad.h"
#include "histogram/record.h"
#include "store/entry_rules.h"
#include "store/store_arrays.h"
#include "store/store_layout.h"
#include "store/store_loader.h"

namespace cellcube {
namespace {

template <typename T>
T Load(const char* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

double AsReal(ArrayType t, const char* p) {
  switch (t) {
    case ArrayType::kInt32:
      return Load<int32_t>(p);
    case ArrayType::kInt64:
      return static_cast<double>(Load<int64_t>(p));
    case ArrayType::kUInt8:
      return Load<uint8_t>(p);
    case ArrayType::kUInt16:
      return Load<uint16_t>(p);
    case ArrayType::kUInt32:
      return Load<uint32_t>(p);
    case ArrayType::kFloat32:
      return Load<float>(p);
    case ArrayType::kFloat64:
      return Load<double>(p);
  }
  return 0;
}

// indptr and indices are int32 or int64 (store_arrays.h sees to that).
int64_t AsInt(ArrayType t, const char* p) {
  return t == ArrayType::kInt64 ? Load<int64_t>(p) : Load<int32_t>(p);
}

// The store file, opened for each read or kept open.
struct FileRef {
  std::string path;
  dev_t dev = 0;
  ino_t ino = 0;
  uint64_t size = 0;
  int fd = -1;
  bool keep_open = true;

  ~FileRef() {
    if (fd >= 0) ::close(fd);
  }
  Status Open() {
    if (fd >= 0) return Status::Ok();
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return Status::IoError("cannot open '" + path + "': " + std::strerror(errno));
    struct stat st {};
    if (::fstat(fd, &st) != 0 || st.st_dev != dev || st.st_ino != ino)
      return Status::IoError("store '" + path + "' was replaced while it was being read");
    return Status::Ok();
  }
  Status Read(char* out, size_t bytes, uint64_t offset) {
    CC_RETURN_IF_ERROR(Open());
    size_t got = 0;
    while (got < bytes) {
      const ssize_t n = ::pread(fd, out + got, bytes - got, static_cast<off_t>(offset + got));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0)
        return n == 0 ? Status::Corrupt("store '" + path + "' is cut short")
                      : Status::IoError("cannot read '" + path + "': " + std::strerror(errno));
      got += static_cast<size_t>(n);
    }
    if (!keep_open) {
      ::close(fd);
      fd = -1;
    }
    return Status::Ok();
  }
};

// One array of the store: read in place through a window, or held in memory.
struct ArrayCursor {
  std::string name;
  ArrayType elem = ArrayType::kInt32;
  size_t elem_size = 4;
  int64_t n = 0;
  bool in_place = false;
  uint64_t offset = 0;
  std::vector<char> memory;  // the whole array, when not in place
  std::vector<char> window;
  int64_t first = 0, count = 0;  // elements in the window

  int64_t Capacity() const { return static_cast<int64_t>(window.size() / elem_size); }
  // Makes elements [i, i + k) readable; k <= Capacity(). Reading on from the window's
  // end (a store read in its own gene order) fills the whole window; a jump elsewhere
  // (an input whose genes come in another order than the output's, as in a merge of
  // merged stores) reads only what is asked, at least 64 KiB: a full window per jump
  // read the same bytes again and again (16x the store in one measured merge).
  Status Fill(FileRef& file, int64_t i, int64_t k) {
    if (i < 0 || k < 0 || i > n || k > n - i)
      return Status::Corrupt("store: '" + name + "' is shorter than its index says");
    if (!in_place || (i >= first && i + k <= first + count)) return Status::Ok();
    constexpr int64_t kJumpBytes = int64_t{64} << 10;
    const bool onward = i >= first + count && i - (first + count) < Capacity();
    const int64_t want =
        onward ? Capacity()
               : std::max(k, std::min(Capacity(), kJumpBytes / static_cast<int64_t>(elem_size)));
    const int64_t take = std::min<int64_t>(want, n - i);
    CC_RETURN_IF_ERROR(file.Read(window.data(), static_cast<size_t>(take) * elem_size,
                                 offset + static_cast<uint64_t>(i) * elem_size));
    first = i;
    count = take;
    return Status::Ok();
  }
  const char* At(int64_t i) const {
    return in_place ? window.data() + static_cast<size_t>(i - first) * elem_size
                    : memory.data() + static_cast<size_t>(i) * elem_size;
  }
  int64_t Int(int64_t i) const { return AsInt(elem, At(i)); }
  double Real(int64_t i) const { return AsReal(elem, At(i)); }
};

}  // namespace

struct StoreFileSource::Impl {
  FileRef file;
  ArrayCursor indptr, indices, nnz, sum, second;  // second: m2, or format 1's sumsq
  // With histograms: the records, and where each gene's start (docs/FORMAT.md).
  ArrayCursor hist_data, hist_indptr;
  bool histograms = false;
  std::vector<bool> not_binned;  // per dataset: negative values, empty records
  int format_version = 0;
  int64_t n_genes = 0, n_groups = 0;
  std::vector<int64_t> n_cells;        // per group
  std::vector<int32_t> group_dataset;  // per group
  MeasuredBits measured;
  const std::vector<int32_t>* gene_map = nullptr;
  const std::vector<int32_t>* group_map = nullptr;
  std::vector<int32_t> order;  // the store's genes in run order
  size_t next = 0;             // position in order

  Status Broken(const std::string& what) const {
    return Status::Corrupt("store '" + file.path + "' is damaged: " + what);
  }
  ArrayCursor* Arrays(int i) {
    ArrayCursor* all[] = {&indptr, &indices, &nnz, &sum, &second, &hist_data, &hist_indptr};
    return all[i];
  }
  int n_arrays() const { return histograms ? 7 : 5; }
  // Whether `cursor`, an index array over `n` elements, is monotone from 0 to `n`.
  Status CheckIndptr(ArrayCursor& cursor, int64_t n, const char* what);
  // Entry k's record (of an entry of `nnz` cells in `group`) at byte `at` of its gene's
  // records, which end at `end`: its bytes in *p and its length.
  Result<size_t> Record(int64_t gene, int64_t k, int64_t group, uint32_t nnz, int64_t at,
                        int64_t end, const uint8_t** p);
};

Status StoreFileSource::Impl::CheckIndptr(ArrayCursor& cursor, int64_t n, const char* what) {
  int64_t previous = 0;
  for (int64_t g = 0; g <= n_genes; g += cursor.Capacity()) {
    const int64_t k = std::min(cursor.Capacity(), n_genes + 1 - g);
    CC_RETURN_IF_ERROR(cursor.Fill(file, g, k));
    for (int64_t i = g; i < g + k; ++i) {
      const int64_t v = cursor.Int(i);
      if ((i == 0 && v != 0) || v < previous || v > n)
        return Broken(std::string(what) + " is not monotone from 0 to its end");
      previous = v;
    }
  }
  if (previous != n) return Broken(std::string(what) + " does not end where its data does");
  return Status::Ok();
}

// The longest record of any entry: the range form of 64 bins, each count up to 2^32 in
// at most 5 varint bytes (a list is never longer than the range: record.h).
constexpr int64_t kLongestRecord = 2 + histogram::kBins * 5;

Result<size_t> StoreFileSource::Impl::Record(int64_t gene, int64_t k, int64_t group, uint32_t nnz,
                                             int64_t at, int64_t end, const uint8_t** p) {
  *p = nullptr;
  if (not_binned[static_cast<size_t>(group_dataset[static_cast<size_t>(group)])]) return 0;
  const int64_t avail = std::min(kLongestRecord, end - at);
  CC_RETURN_IF_ERROR(hist_data.Fill(file, at, avail));
  *p = reinterpret_cast<const uint8_t*>(hist_data.At(at));
  const char* why = nullptr;
  const size_t length = histogram::SkipRecord(*p, static_cast<size_t>(avail), nnz, &why);
  if (why)
    return Broken("entry " + std::to_string(k) + " of gene " + std::to_string(gene) + ": " + why);
  return length;
}

StoreFileSource::StoreFileSource(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
StoreFileSource::~StoreFileSource() = default;

Result<std::unique_ptr<StoreFileSource>> StoreFileSource::Open(const std::string& path,
                                                               StoreData* meta) {
  StoreMetadata loaded;
  CC_ASSIGN_OR_RETURN(auto file, OpenStoreMetadata(path, &loaded));
  *meta = std::move(loaded.meta);
  auto impl = std::make_unique<Impl>();
  impl->format_version = loaded.format_version;
  impl->measured = std::move(loaded.measured);
  impl->file.path = path;
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0)
    return Status::IoError("cannot read '" + path + "': " + std::strerror(errno));
  impl->file.dev = st.st_dev;
  impl->file.ino = st.st_ino;
  impl->file.size = static_cast<uint64_t>(st.st_size);
  auto found = LocateStoreArrays(*file, impl->format_version, meta->n_genes(),
                                 static_cast<int64_t>(meta->datasets.size()),
                                 meta->has_histograms(), impl->file.size);
  if (!found.ok())
    return found.status().code() == StatusCode::kCorrupt ? impl->Broken(found.status().message())
                                                         : found.status();
  const StoreArrays& located = *found;
  impl->histograms = located.has_histograms();
  const LocatedArray* where[] = {&located.indptr,     &located.indices, &located.nnz,
                                 &located.sum,        &located.second,  &located.hist_data,
                                 &located.hist_indptr};
  for (int i = 0; i < impl->n_arrays(); ++i) {
    ArrayCursor& a = *impl->Arrays(i);
    const LocatedArray& l = *where[i];
    a.name = l.path;
    a.elem = l.type;
    a.elem_size = ArrayWidth(l.type);
    a.n = l.elements;
    a.in_place = l.in_place;
    a.offset = l.offset;
    if (!a.in_place) {
      // Re-saved by another tool (chunked, compressed): read whole, through HDF5.
      CC_ASSIGN_OR_RETURN(std::vector<uint64_t> words, ReadWhole(*file, l));
      a.memory.resize(static_cast<size_t>(l.bytes()));
      if (!a.memory.empty()) std::memcpy(a.memory.data(), words.data(), a.memory.size());
    }
  }
  file.reset();  // HDF5 is done with it: the arrays are read with pread from here
  Impl& m = *impl;
  m.n_genes = meta->n_genes();
  m.n_groups = meta->n_groups();
  const int64_t entries = located.n_entries;
  m.n_cells = meta->n_cells;
  m.group_dataset = meta->codes[0];
  for (const DatasetRecord& d : meta->datasets)
    m.not_binned.push_back(d.negative_values == NegativeValues::kSome);
  std::unique_ptr<StoreFileSource> source(new StoreFileSource(std::move(impl)));
  source->n_entries_ = entries;
  return source;
}

Status StoreFileSource::Start(const std::vector<int32_t>* gene_map,
                              const std::vector<int32_t>* group_map, size_t window_bytes,
                              bool keep_open) {
  Impl& m = *impl_;
  if (!gene_map || static_cast<int64_t>(gene_map->size()) != m.n_genes ||
      (group_map && static_cast<int64_t>(group_map->size()) != m.n_groups))
    return Status::Internal("store source started with maps of the wrong size");
  m.gene_map = gene_map;
  m.group_map = group_map;
  m.file.keep_open = keep_open;
  for (int i = 0; i < m.n_arrays(); ++i) {
    ArrayCursor& a = *m.Arrays(i);
    // No larger than the array: a small store's windows would be mostly zero-filled
    // pages (merging two 100 KB shards took 94 MB and 0.44 s at the default limit).
    // Records are read whole: room for the longest one.
    const size_t least = &a == &m.hist_data ? static_cast<size_t>(kLongestRecord) : 16;
    const size_t elements = std::min<size_t>(window_bytes / a.elem_size,
                                             static_cast<size_t>(std::max<int64_t>(a.n, 0)));
    a.window.assign(std::max<size_t>(elements, least) * a.elem_size, 0);
    a.first = a.count = 0;
  }
  // indptr as a whole: monotone from 0 to the entries, so every entry has one gene; the
  // same for the records' bytes.
  CC_RETURN_IF_ERROR(m.CheckIndptr(m.indptr, n_entries_, "indptr"));
  if (m.histograms)
    CC_RETURN_IF_ERROR(m.CheckIndptr(m.hist_indptr, m.hist_data.n, "raw.cellcube/hist_indptr"));
  m.order.clear();
  for (int64_t g = 0; g < m.n_genes; ++g)
    if ((*gene_map)[g] >= 0) m.order.push_back(static_cast<int32_t>(g));
  if (!std::is_sorted(m.order.begin(), m.order.end(),
                      [&](int32_t a, int32_t b) { return (*gene_map)[a] < (*gene_map)[b]; }))
    std::sort(m.order.begin(), m.order.end(),
              [&](int32_t a, int32_t b) { return (*gene_map)[a] < (*gene_map)[b]; });
  m.next = 0;
  if (!m.file.keep_open && m.file.fd >= 0) {
    ::close(m.file.fd);
    m.file.fd = -1;
  }
  return Status::Ok();
}

bool StoreFileSource::has_histograms() const { return impl_->histograms; }

uint64_t StoreFileSource::hist_bytes() const {
  return impl_->histograms ? static_cast<uint64_t>(impl_->hist_data.n) : 0;
}

int64_t StoreFileSource::next_gene() const {
  const Impl& m = *impl_;
  return m.next < m.order.size() ? (*m.gene_map)[m.order[m.next]] : kNoGene;
}

Status StoreFileSource::TakeRun(int64_t group_offset, EntryBuffer* out) {
  Impl& m = *impl_;
  if (m.next >= m.order.size()) return Status::Internal("no store run left to take");
  const int32_t gene = m.order[m.next++];
  CC_RETURN_IF_ERROR(m.indptr.Fill(m.file, gene, 2));
  const int64_t begin = m.indptr.Int(gene), end = m.indptr.Int(gene + 1);
  const EntryContext context{m.n_groups, m.n_cells.data(), m.group_dataset.data(), &m.measured};
  int64_t previous_group = -1;
  int64_t hist_at = 0, hist_end = 0;  // the gene's records still to read
  if (m.histograms) {
    CC_RETURN_IF_ERROR(m.hist_indptr.Fill(m.file, gene, 2));
    hist_at = m.hist_indptr.Int(gene);
    hist_end = m.hist_indptr.Int(gene + 1);
  }
  for (int64_t k = begin; k < end;) {
    const int64_t n = std::min(end - k, m.indices.Capacity());
    for (ArrayCursor* a : {&m.indices, &m.nnz, &m.sum, &m.second})
      CC_RETURN_IF_ERROR(a->Fill(m.file, k, std::min(n, a->Capacity())));
    const int64_t chunk = std::min({n, m.nnz.Capacity(), m.sum.Capacity(), m.second.Capacity()});
    for (int64_t i = k; i < k + chunk; ++i) {
      const int64_t group = m.indices.Int(i);
      const double nnz = m.nnz.Real(i), sum = m.sum.Real(i);
      double m2 = m.second.Real(i);
      if (m.format_version == 1 && group >= 0 && group < m.n_groups)
        m2 = M2FromSumsq(sum, m2, m.n_cells[group]);
      if (const char* fault = EntryFault(context, gene, group, previous_group, nnz, sum, m2))
        return m.Broken("entry " + std::to_string(i) + " of gene " + std::to_string(gene) + ": " +
                        fault);
      previous_group = group;
      const uint8_t* record = nullptr;
      size_t length = 0;
      if (m.histograms) {
        CC_ASSIGN_OR_RETURN(length, m.Record(gene, i, group, static_cast<uint32_t>(nnz), hist_at,
                                             hist_end, &record));
        hist_at += static_cast<int64_t>(length);
      }
      int64_t target = group + group_offset;
      if (m.group_map) {
        target = (*m.group_map)[group];
        if (target < 0) continue;
      }
      if (m.histograms)
        out->Add(target, static_cast<uint32_t>(nnz), sum, m2, record, length);
      else
        out->Add(target, static_cast<uint32_t>(nnz), sum, m2);
    }
    k += chunk;
  }
  if (hist_at != hist_end)
    return m.Broken("the histogram records of gene " + std::to_string(gene) +
                    " do not fill their bytes");
  return Status::Ok();
}

}  // namespace cellcube
