// A progress bar on stderr (cells/s and ETA), drawn only when stderr is a terminal
// and not --quiet, at most ten times a second.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>

namespace cellcube::cli {

class ProgressBar {
 public:
  explicit ProgressBar(bool quiet);
  ~ProgressBar() { Finish(); }
  bool enabled() const { return enabled_; }
  void Update(int64_t done, int64_t total, const std::string& label);
  // Clears the bar (before printing other lines, and at the end).
  void Finish();

 private:
  bool enabled_;
  bool drawn_ = false;
  std::mutex mu_;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

}  // namespace cellcube::cli
