#include "h5ad/write_driver.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <new>

namespace cellcube::h5ad {
namespace {

struct DriverConfig {
  int* os_error;
};

struct DriverFile {
  H5FD_t pub;  // first: HDF5 sees a DriverFile as an H5FD_t
  int fd = -1;
  haddr_t eoa = 0;
  haddr_t eof = 0;
  dev_t device = 0;
  ino_t inode = 0;
  int* os_error = nullptr;  // the first failed write's errno goes here
  bool failed = false;      // after a failed write, writes are dropped
};

DriverFile* Cast(H5FD_t* f) { return reinterpret_cast<DriverFile*>(f); }
const DriverFile* Cast(const H5FD_t* f) { return reinterpret_cast<const DriverFile*>(f); }

constexpr haddr_t kMaxAddr = (haddr_t{1} << 62) - 1;

// An error on HDF5's stack, worded like sec2's so that the writer finds the errno.
void PushError(hid_t minor, const char* what, const char* name, int err) {
  H5Epush2(H5E_DEFAULT, __FILE__, "cellcube write driver", __LINE__, H5E_ERR_CLS, H5E_VFL, minor,
           "%s: name = '%s', errno = %d, error message = '%s'", what, name ? name : "", err,
           std::strerror(err));
}

void Record(DriverFile* f, int err) {
  if (f->failed) return;
  f->failed = true;
  if (f->os_error && *f->os_error == 0) *f->os_error = err ? err : EIO;
}

H5FD_t* Open(const char* name, unsigned flags, hid_t fapl, haddr_t maxaddr) {
  if (!name || !*name || maxaddr == 0 || maxaddr == HADDR_UNDEF) return nullptr;
  int o_flags = (flags & H5F_ACC_RDWR) ? O_RDWR : O_RDONLY;
  if (flags & H5F_ACC_TRUNC) o_flags |= O_TRUNC;
  if (flags & H5F_ACC_CREAT) o_flags |= O_CREAT;
  if (flags & H5F_ACC_EXCL) o_flags |= O_EXCL;
  int fd = ::open(name, o_flags | O_CLOEXEC, 0666);
  if (fd < 0) {
    PushError(H5E_CANTOPENFILE, "unable to open file", name, errno);
    return nullptr;
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    PushError(H5E_BADFILE, "unable to fstat file", name, err);
    return nullptr;
  }
  auto* f = new (std::nothrow) DriverFile();
  if (!f) {
    ::close(fd);
    return nullptr;
  }
  f->fd = fd;
  f->eof = static_cast<haddr_t>(st.st_size);
  f->device = st.st_dev;
  f->inode = st.st_ino;
  const auto* config = static_cast<const DriverConfig*>(H5Pget_driver_info(fapl));
  f->os_error = config ? config->os_error : nullptr;
  return &f->pub;
}

herr_t Close(H5FD_t* file) {
  DriverFile* f = Cast(file);
  if (::close(f->fd) != 0) Record(f, errno);
  delete f;
  return 0;
}

int Compare(const H5FD_t* a, const H5FD_t* b) {
  const DriverFile* x = Cast(a);
  const DriverFile* y = Cast(b);
  if (x->device != y->device) return x->device < y->device ? -1 : 1;
  if (x->inode != y->inode) return x->inode < y->inode ? -1 : 1;
  return 0;
}

herr_t Query(const H5FD_t*, unsigned long* flags) {
  if (flags)
    *flags = H5FD_FEAT_AGGREGATE_METADATA | H5FD_FEAT_ACCUMULATE_METADATA | H5FD_FEAT_DATA_SIEVE |
             H5FD_FEAT_AGGREGATE_SMALLDATA;
  return 0;
}

haddr_t GetEoa(const H5FD_t* file, H5FD_mem_t) { return Cast(file)->eoa; }

herr_t SetEoa(H5FD_t* file, H5FD_mem_t, haddr_t addr) {
  Cast(file)->eoa = addr;
  return 0;
}

haddr_t GetEof(const H5FD_t* file, H5FD_mem_t) { return Cast(file)->eof; }

herr_t GetHandle(H5FD_t* file, hid_t, void** handle) {
  *handle = &Cast(file)->fd;
  return 0;
}

herr_t Read(H5FD_t* file, H5FD_mem_t, hid_t, haddr_t addr, size_t size, void* buffer) {
  DriverFile* f = Cast(file);
  auto* out = static_cast<unsigned char*>(buffer);
  while (size > 0) {
    ssize_t n = ::pread(f->fd, out, size, static_cast<off_t>(addr));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      PushError(H5E_READERROR, "file read failed", "", errno);
      return -1;
    }
    if (n == 0) {  // past the end of the file: zeros, as HDF5 expects
      std::memset(out, 0, size);
      break;
    }
    out += n;
    addr += static_cast<haddr_t>(n);
    size -= static_cast<size_t>(n);
  }
  return 0;
}

herr_t Write(H5FD_t* file, H5FD_mem_t, hid_t, haddr_t addr, size_t size, const void* buffer) {
  DriverFile* f = Cast(file);
  if (addr + size > f->eof) f->eof = addr + size;
  if (f->failed) return 0;  // the file is lost: drop the write, report nothing to HDF5
  const auto* in = static_cast<const unsigned char*>(buffer);
  while (size > 0) {
    ssize_t n = ::pwrite(f->fd, in, size, static_cast<off_t>(addr));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      Record(f, n < 0 ? errno : ENOSPC);
      return 0;
    }
    in += n;
    addr += static_cast<haddr_t>(n);
    size -= static_cast<size_t>(n);
  }
  return 0;
}

herr_t Truncate(H5FD_t* file, hid_t, hbool_t) {
  DriverFile* f = Cast(file);
  if (f->eoa == f->eof) return 0;
  if (!f->failed && ::ftruncate(f->fd, static_cast<off_t>(f->eoa)) != 0) Record(f, errno);
  f->eof = f->eoa;
  return 0;
}

herr_t Lock(H5FD_t* file, hbool_t rw) {
  // Like sec2: an exclusive lock while writing; file systems without locks are fine.
  if (::flock(Cast(file)->fd, (rw ? LOCK_EX : LOCK_SH) | LOCK_NB) != 0 && errno != ENOSYS &&
      errno != ENOLCK && errno != ENOTSUP) {
    PushError(H5E_CANTLOCKFILE, "unable to lock the file", "", errno);
    return -1;
  }
  return 0;
}

herr_t Unlock(H5FD_t* file) {
  ::flock(Cast(file)->fd, LOCK_UN);
  return 0;
}

const H5FD_class_t kDriverClass = {
    "cellcube_write",      // name
    kMaxAddr,              // maxaddr
    H5F_CLOSE_WEAK,        // fc_degree
    nullptr,               // terminate
    nullptr,               // sb_size
    nullptr,               // sb_encode
    nullptr,               // sb_decode
    sizeof(DriverConfig),  // fapl_size
    nullptr,               // fapl_get
    nullptr,               // fapl_copy
    nullptr,               // fapl_free
    0,                     // dxpl_size
    nullptr,               // dxpl_copy
    nullptr,               // dxpl_free
    Open,                  // open
    Close,                 // close
    Compare,               // cmp
    Query,                 // query
    nullptr,               // get_type_map
    nullptr,               // alloc
    nullptr,               // free
    GetEoa,                // get_eoa
    SetEoa,                // set_eoa
    GetEof,                // get_eof
    GetHandle,             // get_handle
    Read,                  // read
    Write,                 // write
    nullptr,               // flush
    Truncate,              // truncate
    Lock,                  // lock
    Unlock,                // unlock
    H5FD_FLMAP_DICHOTOMY,  // fl_map
};

}  // namespace

hid_t MakeWriteAccessList(int* os_error) {
  static hid_t driver = H5FDregister(&kDriverClass);
  if (driver < 0) return H5I_INVALID_HID;
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  if (fapl < 0) return H5I_INVALID_HID;
  DriverConfig config{os_error};
  if (H5Pset_driver(fapl, driver, &config) < 0) {
    H5Pclose(fapl);
    return H5I_INVALID_HID;
  }
  return fapl;
}

}  // namespace cellcube::h5ad
