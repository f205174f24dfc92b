// Replacing a store atomically (internal to src/store): the new store is written to a
// temporary name beside the target, flushed, and renamed over it.
#pragma once

#include <memory>
#include <string>

#include "cellcube/status.h"

namespace cellcube {

class TempOutput {
 public:
  // Checks the target's directory, removes the temporary files of earlier runs on
  // `path` that were killed before they could clean up (those no live process holds
  // locked), and creates a new one, locked for as long as this object lives. The scan
  // and the creation happen under a lock on the directory, so runs side by side (e.g.
  // Snakemake jobs) never remove each other's files.
  static Result<std::unique_ptr<TempOutput>> Begin(const std::string& path);
  // Removes the temporary file unless it was committed.
  ~TempOutput();
  TempOutput(const TempOutput&) = delete;
  TempOutput& operator=(const TempOutput&) = delete;

  const std::string& temp_path() const { return temp_; }
  // The store being replaced.
  const std::string& target() const { return path_; }
  // The target's directory (where temporary files go).
  const std::string& dir() const { return dir_; }

  // Syncs the finished temporary file, renames it over the target and syncs the
  // directory.
  [[nodiscard]] Status Commit();

 private:
  TempOutput(std::string path, std::string dir, std::string temp, int lock_fd);
  std::string path_, dir_, temp_;
  int lock_fd_;
  bool committed_ = false;
};

}  // namespace cellcube
