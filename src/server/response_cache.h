// Rendered API answers, kept per store generation: a portal's visitors ask the same
// dot plots again and again, and an answer is a pure function of the store and the
// request. Entries of older generations are never returned and age out first.
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "server/http.h"

namespace cellcube::server {

// Thread safety: every method may be called from any thread (the map is split into
// shards, each behind its own mutex). Memory: at most about `max_bytes` of bodies and
// keys; 0 disables the cache.
// An answer in both its encodings: `plain`, and `gzip` its body compressed (empty when
// it could not be).
struct CachedAnswer {
  Response plain;
  std::string gzip;
};

class ResponseCache {
 public:
  explicit ResponseCache(size_t max_bytes);
  ResponseCache(const ResponseCache&) = delete;
  ResponseCache& operator=(const ResponseCache&) = delete;

  // The answer stored for `key` under `generation`, or null.
  std::shared_ptr<const CachedAnswer> Find(int64_t generation, const std::string& key);
  // Stores `answer` (a 200 answer) for `key` under `generation`, evicting the least
  // recently used entries of its shard beyond the budget.
  void Insert(int64_t generation, const std::string& key,
              std::shared_ptr<const CachedAnswer> answer);

  size_t max_bytes() const { return max_bytes_; }

 private:
  struct Entry {
    std::string key;
    int64_t generation;
    std::shared_ptr<const CachedAnswer> answer;
    size_t bytes;
  };
  struct Shard {
    std::mutex mu;
    std::list<Entry> lru;  // most recent first
    std::unordered_map<std::string, std::list<Entry>::iterator> index;
    size_t bytes = 0;
  };
  static constexpr size_t kShards = 16;

  Shard& ShardFor(const std::string& key);

  size_t max_bytes_;
  Shard shards_[kShards];
};

}  // namespace cellcube::server
