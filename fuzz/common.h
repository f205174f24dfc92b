// Shared by the fuzz targets: the fuzz input written to a file the readers open by path.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <string>

namespace cellcube::fuzz {

// One temporary file per process, rewritten for every input and opened by path, so the
// readers see a regular file holding the fuzz bytes. (Not a memfd: libhdf5 cannot open
// /proc/self/fd/N paths.) $FUZZ_TMPDIR, else /dev/shm, else /tmp.
class InputFile {
 public:
  InputFile() {
    const char* dir = std::getenv("FUZZ_TMPDIR");
    std::string base = dir ? dir : (access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    std::string templ = base + "/cellcube-fuzz-XXXXXX.h5ad";
    fd_ = mkstemps(templ.data(), 5);
    if (fd_ < 0) std::abort();
    path_ = templ;
    static std::string* to_remove = new std::string(path_);
    std::atexit([] { unlink(to_remove->c_str()); });
  }
  const std::string& Write(const uint8_t* data, size_t size) {
    if (ftruncate(fd_, 0) != 0) std::abort();
    size_t done = 0;
    while (done < size) {
      const ssize_t n = pwrite(fd_, data + done, size - done, static_cast<off_t>(done));
      if (n <= 0) std::abort();
      done += static_cast<size_t>(n);
    }
    return path_;
  }

 private:
  int fd_ = -1;
  std::string path_;
};

}  // namespace cellcube::fuzz
