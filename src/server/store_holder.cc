#include "server/store_holder.h"

#include <sys/stat.h>

#include <chrono>

namespace cellcube::server {
namespace {

std::string Identity(const struct stat& st) {
  return std::to_string(st.st_ino) + ":" + std::to_string(st.st_size) + ":" +
         std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec);
}

}  // namespace

Result<std::shared_ptr<const Snapshot>> StoreHolder::Load(const std::string& path,
                                                          int64_t generation,
                                                          const StoreOpenOptions& given) {
  // Isolated: a damaged replacement must not take the server down with libhdf5.
  StoreOpenOptions options = given;
  options.isolate = true;
  CC_ASSIGN_OR_RETURN(auto engine, QueryEngine::Open(path, options));
  auto snapshot = std::make_shared<Snapshot>();
  snapshot->catalog = std::make_shared<Catalog>(engine);
  snapshot->engine = std::move(engine);
  snapshot->generation = generation;
  return std::shared_ptr<const Snapshot>(std::move(snapshot));
}

Result<std::unique_ptr<StoreHolder>> StoreHolder::Open(const std::string& path,
                                                       const StoreOpenOptions& options) {
  CC_ASSIGN_OR_RETURN(auto snapshot, Load(path, 1, options));
  std::unique_ptr<StoreHolder> holder(new StoreHolder(path));
  holder->options_ = options;
  holder->current_ = std::move(snapshot);
  holder->generation_ = 1;
  return holder;
}

StoreHolder::~StoreHolder() {
  {
    std::lock_guard<std::mutex> lock(stop_mu_);
    stop_ = true;
  }
  stop_cv_.notify_all();
  if (watcher_.joinable()) watcher_.join();
}

std::shared_ptr<const Snapshot> StoreHolder::Get() const {
  std::lock_guard<std::mutex> lock(mu_);
  return current_;
}

bool StoreHolder::CheckNow() {
  struct stat st {};
  if (::stat(path_.c_str(), &st) != 0) return false;  // mid-rename or removed: keep serving
  const auto snapshot = Get();
  const StoreReader& current = snapshot->store();
  const int64_t mtime_ns =
      static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  if (st.st_ino == current.file_inode() &&
      static_cast<uint64_t>(st.st_size) == current.file_size() &&
      mtime_ns == current.file_mtime_ns())
    return false;
  const std::string id = Identity(st);
  if (id == last_failed_) return false;
  auto next = Load(path_, generation_ + 1, options_);
  if (!next.ok()) {
    last_failed_ = id;
    if (log_)
      log_("store " + path_ + " changed but cannot be loaded, still serving the previous one: " +
           next.status().message());
    return false;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    current_ = std::move(next).value();
  }
  generation_++;
  if (log_) log_("reloaded " + path_ + " (generation " + std::to_string(generation_) + ")");
  return true;
}

void StoreHolder::StartWatching(int interval_ms, std::function<void(const std::string&)> log) {
  log_ = std::move(log);
  watcher_ = std::thread([this, interval_ms] {
    std::unique_lock<std::mutex> lock(stop_mu_);
    while (!stop_cv_.wait_for(lock, std::chrono::milliseconds(interval_ms),
                              [this] { return stop_; })) {
      lock.unlock();
      CheckNow();
      lock.lock();
    }
  });
}

}  // namespace cellcube::server
