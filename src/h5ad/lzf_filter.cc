#include "h5ad/lzf_filter.h"

#include <lzf.h>

#include <cerrno>
#include <cstdlib>

namespace cellcube::h5ad {
namespace {

// h5py stores the uncompressed chunk size in cd_values[2]; chunks that would not
// shrink are stored raw with the filter skipped, so every call here has lzf data.
size_t LzfDecode(unsigned flags, size_t cd_nelmts, const unsigned cd_values[], size_t nbytes,
                 size_t* buf_size, void** buf) {
  if (!(flags & H5Z_FLAG_REVERSE)) return 0;  // cellcube never writes lzf
  size_t out_size = (cd_nelmts >= 3 && cd_values[2] != 0) ? cd_values[2] : *buf_size;
  constexpr size_t kMaxChunk = size_t{1} << 32;  // lzf lengths are 32-bit
  while (out_size > 0 && out_size < kMaxChunk) {
    void* out = std::malloc(out_size);
    if (!out) return 0;
    errno = 0;
    unsigned produced =
        lzf_decompress(*buf, static_cast<unsigned>(nbytes), out, static_cast<unsigned>(out_size));
    if (produced != 0) {
      std::free(*buf);
      *buf = out;
      *buf_size = out_size;
      return produced;
    }
    std::free(out);
    if (errno != E2BIG) return 0;  // corrupt stream: HDF5 reports a filter failure
    out_size *= 2;
  }
  return 0;
}

}  // namespace

void RegisterLzfFilter() {
  static const H5Z_class2_t kLzfClass = {
      H5Z_CLASS_T_VERS,
      kLzfFilterId,
      0,  // encoder_present
      1,  // decoder_present
      "lzf (decode only, via liblzf)",
      nullptr,
      nullptr,
      LzfDecode,
  };
  H5Zregister(&kLzfClass);
}

}  // namespace cellcube::h5ad
