// EntryCopy: a few datasets' entries in many genes, read out of the store file with
// batched reads and checked on the way (see StoreEntries::PrepareRead for when, and
// docs/BENCHMARKS.md for why: on a cold mapping each scattered piece costs page faults).
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <thread>

#include "store/batch_read.h"
#include "store/entry_check.h"
#include "store/store_entries.h"
#include "util/parallel.h"

namespace cellcube {

// One anonymous mapping for the whole copy, asked for in huge pages: its first touch
// then costs a few faults instead of one per 4 KB page.
struct EntryCopy::Memory {
  void* base = nullptr;
  size_t bytes = 0;
  ~Memory() {
    if (base) ::munmap(base, bytes);
  }
};

EntryCopy::EntryCopy() = default;
EntryCopy::~EntryCopy() = default;
size_t EntryCopy::bytes() const { return memory_ ? memory_->bytes : 0; }

namespace {

constexpr size_t kAlign = 64;
size_t AlignUp(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

// The copy of one layout: locate each gene's datasets in its groups (pass 1), lay out
// the copy (pass 2), read the slices' statistics and check them (pass 3).
template <typename Index, typename Nnz, typename Sum, typename Second>
class Copier {
 public:
  Copier(const StoreEntries& e, int fd, const void* map, const std::vector<int32_t>& genes,
         const std::vector<int32_t>& datasets)
      : e_(e),
        r_(e.reader()),
        fd_(fd),
        map_(static_cast<const char*>(map)),
        genes_(genes),
        datasets_(datasets),
        nd_(datasets.size()),
        ranges_(genes_.size() * nd_),
        io_(genes_.size()),
        parts_(genes_.size()) {}

  Status Run(void** base, size_t* bytes, EntryArrays* out) {
    ForEachChunk([&](BatchRead& reads, size_t begin, size_t end) { Locate(reads, begin, end); });
    CC_RETURN_IF_ERROR(FirstError());
    CC_RETURN_IF_ERROR(Layout(base, bytes, out));
    ForEachChunk(
        [&](BatchRead& reads, size_t begin, size_t end) { ReadAndCheck(reads, begin, end, *out); });
    return FirstError();
  }

 private:
  static int Workers() { return Cores(); }

  uint64_t Offset(const ArrayView& a, int64_t entry, size_t width) const {
    return static_cast<uint64_t>(static_cast<const char*>(a.data) - map_) +
           static_cast<uint64_t>(entry) * width;
  }

  // Calls f(reads, begin, end) for chunks [begin, end) of the genes, on every core, each
  // core with its own BatchRead, so that a chunk's reads go to the kernel together.
  template <typename F>
  void ForEachChunk(F&& f) {
    constexpr size_t kChunk = 64;
    std::vector<std::unique_ptr<BatchRead>> readers(static_cast<size_t>(Workers()));
    const size_t n_chunks = (genes_.size() + kChunk - 1) / kChunk;
    ParallelFor(n_chunks, Workers(), 1, [&](int worker, size_t c) {
      std::unique_ptr<BatchRead>& reads = readers[static_cast<size_t>(worker)];
      if (!reads) reads = std::make_unique<BatchRead>(fd_);
      f(*reads, c * kChunk, std::min(genes_.size(), (c + 1) * kChunk));
    });
  }

  // Pass 1: reads the genes' groups, finds each dataset's entries in them exactly as
  // StoreReader::DatasetEntries does, checks their neighbours, keeps their groups.
  void Locate(BatchRead& reads, size_t begin, size_t end) {
    thread_local std::vector<Index> groups;
    thread_local std::vector<size_t> at;  // per gene of the chunk, into groups
    at.assign(1, 0);
    for (size_t gi = begin; gi < end; ++gi)
      at.push_back(at.back() + static_cast<size_t>(Entries(genes_[gi])));
    groups.resize(at.back());
    for (size_t gi = begin; gi < end; ++gi) {
      const int64_t first = e_.indptr().IntAt(genes_[gi]);
      reads.Add(Offset(e_.indices(), first, sizeof(Index)), groups.data() + at[gi - begin],
                static_cast<size_t>(Entries(genes_[gi])) * sizeof(Index));
    }
    if (Status s = reads.Finish(); !s.ok()) {
      io_[begin] = s;
      return;
    }
    for (size_t gi = begin; gi < end; ++gi) LocateInGene(gi, groups.data() + at[gi - begin]);
  }

  int64_t Entries(int32_t gene) const {
    return e_.indptr().IntAt(gene + 1) - e_.indptr().IntAt(gene);
  }

  void LocateInGene(size_t gi, const Index* groups) {
    const int32_t g = genes_[gi];
    const int64_t begin = e_.indptr().IntAt(g), n = Entries(g);
    std::vector<Index>& part = parts_[gi];
    for (size_t j = 0; j < nd_; ++j) {
      const auto d = static_cast<size_t>(datasets_[j]);
      EntryRange& range = ranges_[gi * nd_ + j];
      if (!r_.Measured(static_cast<int64_t>(d), g)) {
        range = {begin, begin};
        continue;
      }
      const int64_t first = r_.dataset_group_begin()[d], last = r_.dataset_group_end()[d];
      const EntryRange local = entry_check::LocateGroups(groups, n, first, last);
      const entry_check::Fault f = entry_check::NeighbourFault(groups, n, local, first, last);
      if (f.at >= 0) damaged_ = true;
      range = {begin + local.begin, begin + local.end};
      part.insert(part.end(), groups + local.begin, groups + local.end);
    }
  }

  // Pass 2: the copy's indptr over all the store's genes, and its arrays in one mapping.
  Status Layout(void** mapped, size_t* mapped_bytes, EntryArrays* out) {
    const auto n_genes = static_cast<size_t>(r_.n_genes());
    std::vector<int64_t> count(n_genes, 0);
    for (size_t gi = 0; gi < genes_.size(); ++gi)
      for (size_t j = 0; j < nd_; ++j)
        count[static_cast<size_t>(genes_[gi])] +=
            ranges_[gi * nd_ + j].end - ranges_[gi * nd_ + j].begin;
    int64_t total = 0;
    for (int64_t c : count) total += c;
    const auto t = static_cast<size_t>(total);
    const size_t sizes[] = {(n_genes + 1) * sizeof(int64_t), t * sizeof(Index), t * sizeof(Nnz),
                            t * sizeof(Sum), t * sizeof(Second)};
    size_t bytes = 0;
    for (size_t s : sizes) bytes += AlignUp(s);
    void* base = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED)
      return Status::OutOfMemory("cannot allocate a copy of the entries read");
    (void)::madvise(base, bytes, MADV_HUGEPAGE);  // a hint: without it, only slower
    *mapped = base;
    *mapped_bytes = bytes;
    char* at = static_cast<char*>(base);
    void* arrays[5];
    for (size_t i = 0; i < 5; ++i) {
      arrays[i] = at;
      at += AlignUp(sizes[i]);
    }
    auto* indptr = static_cast<int64_t*>(arrays[0]);
    indptr[0] = 0;
    for (size_t g = 0; g < n_genes; ++g) indptr[g + 1] = indptr[g] + count[g];
    out->indptr = {arrays[0], ArrayType::kInt64, static_cast<int64_t>(n_genes + 1), false};
    out->indices = {arrays[1], ArrayTypeOf<Index>(), total, false};
    out->nnz = {arrays[2], ArrayTypeOf<Nnz>(), total, false};
    out->sum = {arrays[3], ArrayTypeOf<Sum>(), total, false};
    out->second = {arrays[4], ArrayTypeOf<Second>(), total, false};
    out->all_checked = true;
    return Status::Ok();
  }

  // Pass 3: per dataset, its groups from pass 1 and its statistics from the file, then
  // EntryFault's rules over the copy.
  void ReadAndCheck(BatchRead& reads, size_t begin, size_t end, const EntryArrays& out) {
    auto* idx = const_cast<Index*>(out.indices.As<Index>());
    auto* nnz = const_cast<Nnz*>(out.nnz.As<Nnz>());
    auto* sum = const_cast<Sum*>(out.sum.As<Sum>());
    auto* second = const_cast<Second*>(out.second.As<Second>());
    for (size_t gi = begin; gi < end; ++gi) {
      int64_t at = out.indptr.As<int64_t>()[genes_[gi]];
      std::copy(parts_[gi].begin(), parts_[gi].end(), idx + at);
      for (size_t j = 0; j < nd_; ++j) {
        const EntryRange range = ranges_[gi * nd_ + j];
        const auto n = static_cast<size_t>(range.end - range.begin);
        if (n == 0) continue;
        reads.Add(Offset(e_.nnz(), range.begin, sizeof(Nnz)), nnz + at, n * sizeof(Nnz));
        reads.Add(Offset(e_.sum(), range.begin, sizeof(Sum)), sum + at, n * sizeof(Sum));
        reads.Add(Offset(e_.second_moment(), range.begin, sizeof(Second)), second + at,
                  n * sizeof(Second));
        at += static_cast<int64_t>(n);
      }
    }
    if (Status s = reads.Finish(); !s.ok()) {
      io_[begin] = s;
      return;
    }
    for (size_t gi = begin; gi < end; ++gi) {
      const int32_t g = genes_[gi];
      int64_t at = out.indptr.As<int64_t>()[g];
      for (size_t j = 0; j < nd_; ++j) {
        const EntryRange range = ranges_[gi * nd_ + j];
        const int64_t n = range.end - range.begin;
        if (n == 0) continue;
        const auto d = static_cast<size_t>(datasets_[j]);
        const entry_check::Fault f =
            entry_check::SpanFault(r_, g, idx + at, nnz + at, sum + at, second + at, n,
                                   r_.dataset_group_begin()[d], r_.dataset_group_end()[d]);
        if (f.at >= 0) damaged_ = true;
        at += n;
      }
    }
  }

  // The first gene that could not be read, else whether any entry broke the rules. The
  // reader drops a damaged copy and checks the read in place, which names the entry a
  // read meets (and only if it meets one), so the copy needs no more than the verdict.
  Status FirstError() const {
    for (const Status& s : io_) CC_RETURN_IF_ERROR(s);
    if (damaged_) return Status::Corrupt("the entries copied break the store's rules");
    return Status::Ok();
  }

  const StoreEntries& e_;
  const StoreReader& r_;  // its metadata
  const int fd_;
  const char* const map_;
  const std::vector<int32_t>& genes_;  // ascending, each once
  const std::vector<int32_t>& datasets_;
  const size_t nd_;
  std::vector<EntryRange> ranges_;  // per (gene, dataset), in the store
  std::atomic<bool> damaged_{false};
  std::vector<Status> io_;                 // per gene
  std::vector<std::vector<Index>> parts_;  // per gene: its slices' groups
};

}  // namespace

Status EntryCopy::Fill(const StoreEntries& e, int fd, const void* map,
                       const std::vector<int32_t>& genes, const std::vector<int32_t>& datasets) {
  memory_ = std::make_unique<Memory>();
  arrays_ = {};
  EntryArrays layout{e.indptr(), e.indices(), e.nnz(), e.sum(), e.second_moment(), false};
  return VisitEntryTypes(layout, [&](auto index, auto nnz, auto sum, auto second) {
    Copier<decltype(index), decltype(nnz), decltype(sum), decltype(second)> copier(e, fd, map,
                                                                                   genes, datasets);
    return copier.Run(&memory_->base, &memory_->bytes, &arrays_);
  });
}

}  // namespace cellcube
