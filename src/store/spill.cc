#include "store/spill.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "histogram/record.h"
#include "util/varint.h"

namespace cellcube {
namespace {

constexpr size_t kWriteBuffer = size_t{4} << 20;
constexpr uint64_t kPage = 4096;

struct RunHeader {
  uint32_t gene;
  uint32_t count;
  uint64_t entry_bytes;  // the entries, encoded (EncodeEntry)
  uint64_t hist_bytes;
};
static_assert(sizeof(RunHeader) == 24);

// An entry as spilled: its group as the step from the run's previous group (groups
// ascend within a run) and nnz, both LEB128 (one byte each, mostly), then sum and m2 as
// they are: 18 bytes where the fixed record took 24.
constexpr size_t kMaxEntryBytes = 5 + 5 + 2 * sizeof(double);

uint8_t* EncodeEntry(const SpillRecord& r, int32_t previous, uint8_t* p) {
  p = PutVarint(static_cast<uint32_t>(r.group - previous), p);
  p = PutVarint(r.nnz, p);
  std::memcpy(p, &r.sum, sizeof r.sum);
  std::memcpy(p + sizeof r.sum, &r.m2, sizeof r.m2);
  return p + 2 * sizeof(double);
}

Status SpillError(const std::string& what) {
  return Status::IoError(what +
                         " the temporary file of aggregated entries: " + std::strerror(errno));
}

}  // namespace

Result<std::unique_ptr<SpillFile>> SpillFile::Create(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
    // A file system without O_TMPFILE: a named file, unlinked at once.
    std::string name = dir + "/.cellcube-spill-" + std::to_string(::getpid()) + "-XXXXXX";
    fd = ::mkostemp(name.data(), O_CLOEXEC);
    if (fd >= 0) ::unlink(name.c_str());
  }
  if (fd < 0)
    return Status::IoError("cannot create a temporary file in '" + dir +
                           "' for the aggregated entries: " + std::strerror(errno));
  return std::unique_ptr<SpillFile>(new SpillFile(fd, dir));
}

SpillFile::~SpillFile() { ::close(fd_); }

Status SpillFile::AppendRun(uint32_t gene, const SpillRecord* records, uint32_t count,
                            const uint8_t* hist, uint64_t hist_bytes) {
  const size_t most = sizeof(RunHeader) + size_t{count} * kMaxEntryBytes + hist_bytes;
  if (used_ + most > kWriteBuffer) CC_RETURN_IF_ERROR(Flush());
  // Sized once (or for the largest run): the bytes are written in place, not appended.
  if (buffer_.size() < std::max(most, kWriteBuffer)) buffer_.resize(std::max(most, kWriteBuffer));
  char* at = buffer_.data() + used_;
  auto* entries = reinterpret_cast<uint8_t*>(at + sizeof(RunHeader));
  uint8_t* p = entries;
  int32_t previous = -1;  // the first group's step is group + 1
  for (uint32_t k = 0; k < count; ++k) {
    if (records[k].group <= previous)
      return Status::Internal("a spilled run's groups are not ascending");
    p = EncodeEntry(records[k], previous, p);
    previous = records[k].group;
  }
  const RunHeader header{gene, count, static_cast<uint64_t>(p - entries), hist_bytes};
  std::memcpy(at, &header, sizeof header);
  if (hist_bytes) std::memcpy(p, hist, hist_bytes);
  used_ = static_cast<size_t>(reinterpret_cast<char*>(p) - buffer_.data()) + hist_bytes;
  records_ += count;
  hist_bytes_ += hist_bytes;
  return Status::Ok();
}

Status SpillFile::Flush() {
  const char* p = buffer_.data();
  size_t left = used_;
  while (left > 0) {
    const ssize_t n = ::pwrite(fd_, p, left, static_cast<off_t>(written_));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (n == 0) errno = ENOSPC;
      return Status::IoError("cannot write the temporary file of aggregated entries in '" + dir_ +
                             "': " + std::strerror(errno));
    }
    p += n;
    left -= static_cast<size_t>(n);
    written_ += static_cast<uint64_t>(n);
  }
  used_ = 0;
  return Status::Ok();
}

SpillSegment::SpillSegment(int fd, uint64_t begin, uint64_t end,
                           const std::vector<int32_t>* gene_map, size_t window_bytes,
                           bool drop_records)
    : fd_(fd),
      end_(end),
      gene_map_(gene_map),
      window_(std::max<size_t>(window_bytes, 64 * kMaxEntryBytes)),
      window_pos_(begin),
      cursor_(begin),
      released_((begin + kPage - 1) / kPage * kPage),
      drop_records_(drop_records) {}

Result<std::unique_ptr<SpillSegment>> SpillSegment::Open(int fd, uint64_t begin, uint64_t end,
                                                         const std::vector<int32_t>* gene_map,
                                                         size_t window_bytes, bool drop_records) {
  std::unique_ptr<SpillSegment> s(
      new SpillSegment(fd, begin, end, gene_map, window_bytes, drop_records));
  CC_RETURN_IF_ERROR(s->ReadHeader());
  return s;
}

Status SpillSegment::Ensure(size_t bytes) {
  if (cursor_ + bytes <= window_pos_ + window_len_) return Status::Ok();
  if (cursor_ + bytes > end_) return Status::Internal("the temporary file of entries is cut short");
  // Pages wholly read are not needed again: give them back to the file system.
  const uint64_t done = cursor_ / kPage * kPage;
  if (done > released_) {
    (void)::fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                      static_cast<off_t>(released_), static_cast<off_t>(done - released_));
    released_ = done;
  }
  if (window_.size() < bytes) window_.resize(bytes);
  const size_t want = static_cast<size_t>(std::min<uint64_t>(window_.size(), end_ - cursor_));
  size_t got = 0;
  while (got < want) {
    const ssize_t n =
        ::pread(fd_, window_.data() + got, want - got, static_cast<off_t>(cursor_ + got));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0)
      return n == 0 ? Status::Internal("the temporary file of entries is cut short")
                    : SpillError("cannot read");
    got += static_cast<size_t>(n);
  }
  window_pos_ = cursor_;
  window_len_ = got;
  return Status::Ok();
}

Status SpillSegment::ReadHeader() {
  if (cursor_ >= end_) {
    next_gene_ = kNoGene;
    return Status::Ok();
  }
  CC_RETURN_IF_ERROR(Ensure(sizeof(RunHeader)));
  RunHeader h;
  std::memcpy(&h, window_.data() + (cursor_ - window_pos_), sizeof h);
  cursor_ += sizeof h;
  if (h.gene >= gene_map_->size()) return Status::Internal("a spilled run names an unknown gene");
  const int64_t gene = (*gene_map_)[h.gene];
  if (next_gene_ != kNoGene && gene <= next_gene_)
    return Status::Internal("spilled runs are not in the order of the store's genes");
  next_gene_ = gene;
  next_count_ = h.count;
  next_entry_bytes_ = h.entry_bytes;
  next_hist_bytes_ = h.hist_bytes;
  return Status::Ok();
}

// The run's records, after its entries [first, out->size()) were taken (with empty
// records): each one's length follows from its bytes and its entry's nnz.
Status SpillSegment::TakeRecords(size_t first, EntryBuffer* out) {
  if (next_hist_bytes_ == 0) return Status::Ok();
  if (next_hist_bytes_ > end_ - cursor_)
    return Status::Internal("the temporary file of entries is cut short");
  const auto bytes = static_cast<size_t>(next_hist_bytes_);
  if (drop_records_) {  // not binned: skipped, the entries keep their empty records
    cursor_ += bytes;
    return Status::Ok();
  }
  CC_RETURN_IF_ERROR(Ensure(bytes));
  const auto* p = reinterpret_cast<const uint8_t*>(window_.data() + (cursor_ - window_pos_));
  const uint64_t base = out->hist.size();
  out->hist.insert(out->hist.end(), p, p + bytes);
  size_t at = 0;
  // The build wrote these records a moment ago: their lengths come from their forms
  // alone; the writer checks every record before it writes it (RecordFault).
  for (size_t k = first; k < out->size(); ++k) {
    at += histogram::CheckedRecordLength(p + at, bytes - at, out->nnz[k]);
    out->hist_end[k] = base + at;
  }
  if (at != bytes) return Status::Internal("spilled histogram records do not match their entries");
  cursor_ += bytes;
  return Status::Ok();
}

Status SpillSegment::TakeRun(int64_t group_offset, EntryBuffer* out) {
  if (next_gene_ == kNoGene) return Status::Internal("no spilled run left to take");
  if (next_entry_bytes_ > end_ - cursor_ ||
      next_entry_bytes_ > size_t{next_count_} * kMaxEntryBytes)
    return Status::Internal("the temporary file of entries is cut short");
  const auto bytes = static_cast<size_t>(next_entry_bytes_);
  CC_RETURN_IF_ERROR(Ensure(bytes));
  const auto* p = reinterpret_cast<const uint8_t*>(window_.data() + (cursor_ - window_pos_));
  const uint8_t* end = p + bytes;
  const size_t first = out->size();
  int64_t group = -1;
  for (uint32_t k = 0; k < next_count_; ++k) {
    uint64_t step = 0, nnz = 0;
    if (GetVarint(&p, end, 5, &step) != VarintRead::kOk ||
        GetVarint(&p, end, 5, &nnz) != VarintRead::kOk || step == 0 || nnz > UINT32_MAX ||
        end - p < static_cast<ptrdiff_t>(2 * sizeof(double)))
      return Status::Internal("the temporary file of entries is damaged");
    group += step;
    double sum, m2;
    std::memcpy(&sum, p, sizeof sum);
    std::memcpy(&m2, p + sizeof sum, sizeof m2);
    p += 2 * sizeof(double);
    out->Add(group + group_offset, static_cast<uint32_t>(nnz), sum, m2);
  }
  if (p != end) return Status::Internal("the temporary file of entries is damaged");
  cursor_ += bytes;
  CC_RETURN_IF_ERROR(TakeRecords(first, out));
  return ReadHeader();
}

}  // namespace cellcube
