#include "store/spill.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "histogram/record.h"

namespace cellcube {
namespace {

constexpr size_t kWriteBuffer = size_t{4} << 20;
constexpr uint64_t kPage = 4096;

struct RunHeader {
  uint32_t gene;
  uint32_t count;
  uint64_t hist_bytes;
};
static_assert(sizeof(RunHeader) == 16);

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
  const RunHeader header{gene, count, hist_bytes};
  const size_t bytes = sizeof header + size_t{count} * sizeof(SpillRecord) + hist_bytes;
  if (buffer_.size() + bytes > kWriteBuffer) CC_RETURN_IF_ERROR(Flush());
  const char* h = reinterpret_cast<const char*>(&header);
  buffer_.insert(buffer_.end(), h, h + sizeof header);
  const char* r = reinterpret_cast<const char*>(records);
  buffer_.insert(buffer_.end(), r, r + size_t{count} * sizeof(SpillRecord));
  const char* b = reinterpret_cast<const char*>(hist);
  if (hist_bytes) buffer_.insert(buffer_.end(), b, b + hist_bytes);
  records_ += count;
  hist_bytes_ += hist_bytes;
  return Status::Ok();
}

Status SpillFile::Flush() {
  const char* p = buffer_.data();
  size_t left = buffer_.size();
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
  buffer_.clear();
  return Status::Ok();
}

SpillSegment::SpillSegment(int fd, uint64_t begin, uint64_t end,
                           const std::vector<int32_t>* gene_map, size_t window_bytes,
                           bool drop_records)
    : fd_(fd),
      end_(end),
      gene_map_(gene_map),
      window_(std::max<size_t>(window_bytes, 64 * sizeof(SpillRecord))),
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
  const size_t first = out->size();
  uint32_t left = next_count_;
  while (left > 0) {
    const uint32_t room = static_cast<uint32_t>(window_.size() / sizeof(SpillRecord));
    const uint32_t n = std::min(left, room);
    CC_RETURN_IF_ERROR(Ensure(size_t{n} * sizeof(SpillRecord)));
    const char* p = window_.data() + (cursor_ - window_pos_);
    for (uint32_t i = 0; i < n; ++i) {
      SpillRecord r;
      std::memcpy(&r, p + size_t{i} * sizeof r, sizeof r);
      out->Add(r.group + group_offset, r.nnz, r.sum, r.m2);
    }
    cursor_ += size_t{n} * sizeof(SpillRecord);
    left -= n;
  }
  CC_RETURN_IF_ERROR(TakeRecords(first, out));
  return ReadHeader();
}

}  // namespace cellcube
