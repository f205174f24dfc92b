// Reading a 1-D dataset's stored bytes directly (pread + libdeflate), without HDF5
// and so without its global lock: several threads inflate chunks at once. Used for
// the values and indices of sparse matrices when their storage allows it (contiguous,
// or chunked with deflate alone); anything else goes through HDF5.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cellcube/status.h"
#include "h5ad/hdf5_util.h"

namespace cellcube::h5ad {

class DirectSource {
 public:
  // Indexes `dataset`'s chunks (holding the HDF5 lock); nullopt when the layout,
  // filters or element type need HDF5. `fd` stays owned by the caller.
  static std::optional<DirectSource> Index(hid_t dataset, int fd, uint64_t file_size,
                                           std::string what);

  // Reads elements [begin, begin + count), converted. Thread-safe; no HDF5 call.
  Status Read(int64_t begin, int64_t count, double* out) const;
  Status Read(int64_t begin, int64_t count, int64_t* out) const;

 private:
  enum class Kind { kSigned, kUnsigned, kFloat };
  template <typename Out>
  Status ReadAs(int64_t begin, int64_t count, Out* out) const;
  template <typename Out>
  void ConvertRun(const unsigned char* src, int64_t n, Out* dst) const;
  template <typename Out>
  Status ReadContiguous(int64_t begin, int64_t count, std::vector<unsigned char>* raw,
                        Out* out) const;
  Status LoadChunk(int64_t chunk, std::vector<unsigned char>* raw,
                   std::vector<unsigned char>* inflated, const unsigned char** bytes) const;

  std::string what_;  // for errors: "matrix 'X' data"
  int fd_ = -1;
  uint64_t file_size_ = 0;
  Kind kind_ = Kind::kFloat;
  size_t elem_size_ = 0;
  int64_t elements_ = 0;
  int64_t chunk_elems_ = 0;
  bool deflate_ = false;
  bool contiguous_ = false;  // one stored run of elements: read just the bytes needed
  std::vector<uint64_t> addr_, size_;
  std::vector<uint32_t> skipped_;  // filter mask: 1 = stored without deflate
};

}  // namespace cellcube::h5ad
