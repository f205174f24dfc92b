// The store a server answers from, reloaded when the file is replaced on disk (e.g.
// by `cellcube add`, which renames a new file over it). Requests take a shared_ptr
// snapshot, so a reload never disturbs a request in flight.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "cellcube/query.h"
#include "server/catalog.h"

namespace cellcube::server {

// One loaded store: its query engine and what is precomputed for serving it.
struct Snapshot {
  std::shared_ptr<const QueryEngine> engine;
  std::shared_ptr<const Catalog> catalog;
  int64_t generation = 0;
  const StoreReader& store() const { return engine->store(); }
};

class StoreHolder {
 public:
  // Opens the store, isolated, with `options`' preload (kept for every store file it
  // loads later); fails like StoreReader::Open.
  static Result<std::shared_ptr<const Snapshot>> Load(const std::string& path, int64_t generation,
                                                      const StoreOpenOptions& options = {});
  static Result<std::unique_ptr<StoreHolder>> Open(const std::string& path,
                                                   const StoreOpenOptions& options = {});
  ~StoreHolder();

  std::shared_ptr<const Snapshot> Get() const;
  // How many store files have been loaded (1 after Open).
  int64_t generation() const { return generation_; }

  // Checks the file every `interval_ms` and swaps in a replaced one; `log` hears of
  // reloads and of replacements that fail to open (the old store stays in use).
  void StartWatching(int interval_ms, std::function<void(const std::string&)> log);
  // Checks once now; true when a new store was loaded.
  bool CheckNow();

 private:
  explicit StoreHolder(std::string path) : path_(std::move(path)) {}

  std::string path_;
  StoreOpenOptions options_;
  mutable std::mutex mu_;
  std::shared_ptr<const Snapshot> current_;
  std::atomic<int64_t> generation_{0};
  std::function<void(const std::string&)> log_;
  std::string last_failed_;  // identity of a file that failed to open, not retried
  std::thread watcher_;
  std::mutex stop_mu_;
  std::condition_variable stop_cv_;
  bool stop_ = false;
};

}  // namespace cellcube::server
