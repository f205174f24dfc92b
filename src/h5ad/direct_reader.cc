#include "h5ad/direct_reader.h"

#include <libdeflate.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

namespace cellcube::h5ad {
namespace {

struct DecompressorDeleter {
  void operator()(libdeflate_decompressor* d) const { libdeflate_free_decompressor(d); }
};

libdeflate_decompressor* ThreadDecompressor() {
  thread_local std::unique_ptr<libdeflate_decompressor, DecompressorDeleter> d(
      libdeflate_alloc_decompressor());
  return d.get();
}

template <typename In, typename Out>
void Convert(const unsigned char* bytes, int64_t n, Out* out) {
  for (int64_t i = 0; i < n; ++i) {
    In v;
    std::memcpy(&v, bytes + i * static_cast<int64_t>(sizeof(In)), sizeof(In));
    out[i] = static_cast<Out>(v);
  }
}

}  // namespace

std::optional<DirectSource> DirectSource::Index(hid_t dataset, int fd, uint64_t file_size,
                                                std::string what) {
  if (fd < 0) return std::nullopt;
  Handle type(H5Dget_type(dataset));
  TypeClass cls = ClassifyType(type.get());
  const size_t size = H5Tget_size(type.get());
  if (H5Tget_order(type.get()) != H5T_ORDER_LE && size != 1) return std::nullopt;
  DirectSource s;
  if (cls == TypeClass::kFloat && (size == 4 || size == 8))
    s.kind_ = Kind::kFloat;
  else if (cls == TypeClass::kInteger && (size == 1 || size == 2 || size == 4 || size == 8))
    s.kind_ = Kind::kSigned;
  else if (cls == TypeClass::kUnsigned && (size == 1 || size == 2 || size == 4 || size == 8))
    s.kind_ = Kind::kUnsigned;
  else
    return std::nullopt;
  if (cls == TypeClass::kFloat) {
    // Only IEEE binary32/binary64 as the host has them.
    if (H5Tequal(type.get(), size == 4 ? H5T_IEEE_F32LE : H5T_IEEE_F64LE) <= 0) return std::nullopt;
  }
  auto shape = DatasetShape(dataset);
  if (shape.size() != 1) return std::nullopt;
  s.what_ = std::move(what);
  s.fd_ = fd;
  s.file_size_ = file_size;
  s.elem_size_ = size;
  s.elements_ = shape[0];
  Handle dcpl(H5Dget_create_plist(dataset));
  const H5D_layout_t layout = H5Pget_layout(dcpl.get());
  const int n_filters = H5Pget_nfilters(dcpl.get());
  if (layout == H5D_CONTIGUOUS) {
    if (n_filters != 0) return std::nullopt;
    haddr_t addr = H5Dget_offset(dataset);
    if (s.elements_ > 0 && addr == HADDR_UNDEF) return std::nullopt;  // never written
    s.contiguous_ = true;
    s.chunk_elems_ = std::max<int64_t>(1, s.elements_);
    s.addr_ = {addr};
    s.size_ = {static_cast<uint64_t>(s.elements_) * size};
    s.skipped_ = {1};
    return s;
  }
  if (layout != H5D_CHUNKED) return std::nullopt;
  if (n_filters == 1) {
    unsigned flags = 0, cd[4];
    size_t n_cd = 4;
    if (H5Pget_filter2(dcpl.get(), 0, &flags, &n_cd, cd, 0, nullptr, nullptr) != H5Z_FILTER_DEFLATE)
      return std::nullopt;
    s.deflate_ = true;
  } else if (n_filters != 0) {
    return std::nullopt;
  }
  hsize_t chunk = 0;
  if (H5Pget_chunk(dcpl.get(), 1, &chunk) != 1 || chunk == 0) return std::nullopt;
  s.chunk_elems_ = static_cast<int64_t>(chunk);
  const int64_t n_chunks = (s.elements_ + s.chunk_elems_ - 1) / s.chunk_elems_;
  for (int64_t k = 0; k < n_chunks; ++k) {
    hsize_t offset = static_cast<hsize_t>(k) * chunk;
    unsigned mask = 0;
    haddr_t addr = HADDR_UNDEF;
    hsize_t bytes = 0;
    // An unwritten chunk (fill values) or any lookup failure: let HDF5 do it.
    if (H5Dget_chunk_info_by_coord(dataset, &offset, &mask, &addr, &bytes) < 0 ||
        addr == HADDR_UNDEF)
      return std::nullopt;
    s.addr_.push_back(addr);
    s.size_.push_back(bytes);
    s.skipped_.push_back(!s.deflate_ || (mask & 1u));
  }
  return s;
}

Status DirectSource::LoadChunk(int64_t chunk, std::vector<unsigned char>* raw,
                               std::vector<unsigned char>* inflated,
                               const unsigned char** bytes) const {
  const uint64_t addr = addr_[chunk], size = size_[chunk];
  if (addr > file_size_ || size > file_size_ - addr)
    return Status::Corrupt(what_ + ": chunk " + std::to_string(chunk) +
                           " lies beyond the end of the file (truncated?)");
  raw->resize(size);
  uint64_t done = 0;
  while (done < size) {
    ssize_t n = ::pread(fd_, raw->data() + done, size - done, static_cast<off_t>(addr + done));
    if (n <= 0) return Status::IoError(what_ + ": cannot read chunk " + std::to_string(chunk));
    done += static_cast<uint64_t>(n);
  }
  const uint64_t expect = static_cast<uint64_t>(chunk_elems_) * elem_size_;
  if (skipped_[chunk]) {
    if (size < std::min<uint64_t>(expect, static_cast<uint64_t>(elements_) * elem_size_))
      return Status::Corrupt(what_ + ": chunk " + std::to_string(chunk) + " is too short");
    *bytes = raw->data();
    return Status::Ok();
  }
  inflated->resize(expect);
  size_t produced = 0;
  auto rc = libdeflate_zlib_decompress(ThreadDecompressor(), raw->data(), size, inflated->data(),
                                       expect, &produced);
  if (rc != LIBDEFLATE_SUCCESS || produced != expect)
    return Status::Corrupt(what_ + ": chunk " + std::to_string(chunk) +
                           " does not inflate (damaged gzip data)");
  *bytes = inflated->data();
  return Status::Ok();
}

template <typename Out>
Status DirectSource::ReadAs(int64_t begin, int64_t count, Out* out) const {
  if (begin < 0 || count < 0 || begin + count > elements_)
    return Status::Corrupt(what_ + ": range outside the dataset");
  // Nothing to read (an empty dataset has no file address: h5py writes them so).
  if (count == 0) return Status::Ok();
  thread_local std::vector<unsigned char> raw, inflated;
  if (contiguous_) return ReadContiguous(begin, count, &raw, out);
  int64_t pos = begin;
  while (pos < begin + count) {
    const int64_t chunk = pos / chunk_elems_;
    const int64_t first = pos - chunk * chunk_elems_;
    const int64_t n = std::min(begin + count - pos, chunk_elems_ - first);
    const unsigned char* bytes = nullptr;
    CC_RETURN_IF_ERROR(LoadChunk(chunk, &raw, &inflated, &bytes));
    ConvertRun(bytes + first * static_cast<int64_t>(elem_size_), n, out + (pos - begin));
    pos += n;
  }
  return Status::Ok();
}

template <typename Out>
void DirectSource::ConvertRun(const unsigned char* src, int64_t n, Out* dst) const {
  switch (kind_) {
    case Kind::kFloat:
      if (elem_size_ == 4)
        Convert<float>(src, n, dst);
      else
        Convert<double>(src, n, dst);
      break;
    case Kind::kSigned:
      if (elem_size_ == 1)
        Convert<int8_t>(src, n, dst);
      else if (elem_size_ == 2)
        Convert<int16_t>(src, n, dst);
      else if (elem_size_ == 4)
        Convert<int32_t>(src, n, dst);
      else
        Convert<int64_t>(src, n, dst);
      break;
    case Kind::kUnsigned:
      if (elem_size_ == 1)
        Convert<uint8_t>(src, n, dst);
      else if (elem_size_ == 2)
        Convert<uint16_t>(src, n, dst);
      else if (elem_size_ == 4)
        Convert<uint32_t>(src, n, dst);
      else
        Convert<uint64_t>(src, n, dst);
      break;
  }
}

template <typename Out>
Status DirectSource::ReadContiguous(int64_t begin, int64_t count, std::vector<unsigned char>* raw,
                                    Out* out) const {
  const uint64_t offset = addr_[0] + static_cast<uint64_t>(begin) * elem_size_;
  const uint64_t bytes = static_cast<uint64_t>(count) * elem_size_;
  if (addr_[0] > file_size_ || offset > file_size_ || bytes > file_size_ - offset)
    return Status::Corrupt(what_ + " lies beyond the end of the file (truncated?)");
  raw->resize(bytes);
  uint64_t done = 0;
  while (done < bytes) {
    ssize_t n = ::pread(fd_, raw->data() + done, bytes - done, static_cast<off_t>(offset + done));
    if (n <= 0) return Status::IoError(what_ + ": read failed");
    done += static_cast<uint64_t>(n);
  }
  ConvertRun(raw->data(), count, out);
  return Status::Ok();
}

Status DirectSource::Read(int64_t begin, int64_t count, double* out) const {
  return ReadAs(begin, count, out);
}

Status DirectSource::Read(int64_t begin, int64_t count, int64_t* out) const {
  if (kind_ == Kind::kFloat) return Status::Corrupt(what_ + ": indices are not integers");
  return ReadAs(begin, count, out);
}

}  // namespace cellcube::h5ad
