#include "cli/progress.h"

#include <unistd.h>

#include <cstdio>

namespace cellcube::cli {
namespace {

std::string Duration(double seconds) {
  auto s = static_cast<int64_t>(seconds + 0.5);
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", static_cast<long long>(s / 3600),
                  static_cast<long long>(s / 60 % 60), static_cast<long long>(s % 60));
  else
    std::snprintf(buf, sizeof buf, "%lld:%02lld", static_cast<long long>(s / 60),
                  static_cast<long long>(s % 60));
  return buf;
}

std::string Rate(double per_second) {
  char buf[32];
  if (per_second >= 1e6)
    std::snprintf(buf, sizeof buf, "%.1fM", per_second / 1e6);
  else if (per_second >= 1e3)
    std::snprintf(buf, sizeof buf, "%.0fk", per_second / 1e3);
  else
    std::snprintf(buf, sizeof buf, "%.0f", per_second);
  return buf;
}

}  // namespace

ProgressBar::ProgressBar(bool quiet)
    : enabled_(!quiet && ::isatty(STDERR_FILENO)), start_(std::chrono::steady_clock::now()) {}

void ProgressBar::Update(int64_t done, int64_t total, const std::string& label) {
  if (!enabled_) return;
  std::lock_guard<std::mutex> lock(mu_);
  auto now = std::chrono::steady_clock::now();
  if (drawn_ && now - last_draw_ < std::chrono::milliseconds(100) && done < total) return;
  last_draw_ = now;
  double elapsed = std::chrono::duration<double>(now - start_).count();
  double frac = total > 0 ? static_cast<double>(done) / static_cast<double>(total) : 1.0;
  constexpr int kWidth = 28;
  int filled = static_cast<int>(frac * kWidth);
  std::string bar(static_cast<size_t>(filled), '#');
  bar.resize(kWidth, '.');
  double rate = elapsed > 0 ? static_cast<double>(done) / elapsed : 0;
  std::string eta = rate > 0 && done < total ? Duration(static_cast<double>(total - done) / rate)
                                             : std::string("-");
  std::fprintf(stderr, "\r\033[K[%s] %3.0f%%  %s cells/s  ETA %s  %s", bar.c_str(), frac * 100,
               Rate(rate).c_str(), eta.c_str(), label.c_str());
  std::fflush(stderr);
  drawn_ = true;
}

void ProgressBar::Finish() {
  std::lock_guard<std::mutex> lock(mu_);
  if (!drawn_) return;
  std::fprintf(stderr, "\r\033[K");
  std::fflush(stderr);
  drawn_ = false;
}

}  // namespace cellcube::cli
