#include "store/temp_output.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "util/isolate.h"

namespace cellcube {
namespace {

// An open-file-description lock on the whole file: held while its process lives, and
// independent of the flock HDF5's file driver takes on its own descriptor.
bool LockWhole(int fd, bool wait) {
  struct flock l {};
  l.l_type = F_WRLCK;
  l.l_whence = SEEK_SET;
  return ::fcntl(fd, wait ? F_OFD_SETLKW : F_OFD_SETLK, &l) == 0;
}

Status SyncPath(const std::string& path, bool directory) {
  int fd = ::open(path.c_str(), directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  if (fd < 0) return Status::IoError("cannot open '" + path + "' to sync: " + std::strerror(errno));
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) return Status::IoError("cannot sync '" + path + "': " + std::strerror(err));
  return Status::Ok();
}

// Removes `dir`/`prefix`* files whose writer is gone (no lock on them).
void RemoveStale(const std::string& dir, const std::string& prefix) {
  DIR* d = ::opendir(dir.c_str());
  if (!d) return;
  while (const dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name.compare(0, prefix.size(), prefix) != 0) continue;
    const std::string path = dir + "/" + name;
    const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) continue;
    if (LockWhole(fd, false)) ::unlink(path.c_str());
    ::close(fd);
  }
  ::closedir(d);
}

}  // namespace

TempOutput::TempOutput(std::string path, std::string dir, std::string temp, int lock_fd)
    : path_(std::move(path)), dir_(std::move(dir)), temp_(std::move(temp)), lock_fd_(lock_fd) {}

Result<std::unique_ptr<TempOutput>> TempOutput::Begin(const std::string& path) {
  std::filesystem::path target(path);
  std::error_code ec;
  if (std::filesystem::is_directory(target, ec))
    return Status::InvalidArgument("'" + path + "' is a directory; give a file path for the store");
  const std::string dir = target.parent_path().empty() ? "." : target.parent_path().string();
  if (!std::filesystem::is_directory(dir, ec))
    return Status::NotFound("cannot write '" + path + "': directory '" + dir + "' does not exist");
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0)
    return Status::IoError("cannot open directory '" + dir + "': " + std::strerror(errno));
  ::flock(dir_fd, LOCK_EX);  // best effort: released when dir_fd closes below
  const std::string prefix = target.filename().string() + ".tmp-";
  RemoveStale(dir, prefix);
  static std::atomic<int> counter{0};
  std::string temp;
  int fd = -1;
  for (int attempt = 0; attempt < 100 && fd < 0; ++attempt) {
    temp = dir + "/" + prefix + std::to_string(::getpid()) + "-" + std::to_string(counter++);
    fd = ::open(temp.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0 && errno != EEXIST) break;
  }
  if (fd < 0) {
    const int err = errno;
    ::close(dir_fd);
    return Status::IoError("cannot write '" + path + "': cannot create a file in '" + dir +
                           "': " + std::strerror(err));
  }
  LockWhole(fd, true);
  ::close(dir_fd);
  NoteTemporaryFile(temp);  // removed by the parent if this process dies mid-write
  return std::unique_ptr<TempOutput>(new TempOutput(path, dir, temp, fd));
}

TempOutput::~TempOutput() {
  if (!committed_) ::unlink(temp_.c_str());
  NoteTemporaryFile("");
  ::close(lock_fd_);
}

Status TempOutput::Commit() {
  if (::fsync(lock_fd_) != 0)
    return Status::IoError("cannot sync '" + temp_ + "': " + std::strerror(errno));
  if (std::rename(temp_.c_str(), path_.c_str()) != 0)
    return Status::IoError("cannot rename '" + temp_ + "' to '" + path_ +
                           "': " + std::strerror(errno));
  committed_ = true;
  NoteTemporaryFile("");
  return SyncPath(dir_, true);
}

}  // namespace cellcube
