// The HDF5 file driver h5ad::Writer writes through: plain POSIX I/O like HDF5's default
// (sec2) driver, same file format, except that a failed write (disk full, I/O error)
// is recorded instead of reported to HDF5, and every later write is dropped.
//
// Why: HDF5 1.10 cannot close a file whose metadata it failed to write; the file stays
// half-closed and the library crashes in its exit handler. With this driver HDF5 never
// sees a failure, closes the (lost) file normally, and the writer reports the recorded
// error with the file's path. Callers hold Hdf5Lock.
#pragma once

#include <hdf5.h>

namespace cellcube::h5ad {

// A file access property list for the driver; the first failed write stores its errno
// in *os_error (which must outlive the file). Invalid id on failure.
hid_t MakeWriteAccessList(int* os_error);

}  // namespace cellcube::h5ad
