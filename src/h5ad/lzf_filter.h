// HDF5 filter 32000 (lzf, as h5py writes it), decoded with Debian's liblzf.
// Debian's hdf5-plugin-lzf cannot be loaded (it is not linked to liblzf), so the
// filter is registered in-process: no plugin path, nothing for the user to set.
#pragma once

#include <hdf5.h>

namespace cellcube::h5ad {

inline constexpr H5Z_filter_t kLzfFilterId = 32000;

// Registers the decoder with HDF5. Call once, holding the HDF5 lock.
void RegisterLzfFilter();

}  // namespace cellcube::h5ad
