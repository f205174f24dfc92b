#include "server/response_cache.h"

#include <functional>

namespace cellcube::server {

ResponseCache::ResponseCache(size_t max_bytes) : max_bytes_(max_bytes) {}

ResponseCache::Shard& ResponseCache::ShardFor(const std::string& key) {
  return shards_[std::hash<std::string>{}(key) % kShards];
}

std::shared_ptr<const CachedAnswer> ResponseCache::Find(int64_t generation,
                                                        const std::string& key) {
  if (max_bytes_ == 0) return nullptr;
  Shard& shard = ShardFor(key);
  std::lock_guard<std::mutex> lock(shard.mu);
  auto it = shard.index.find(key);
  if (it == shard.index.end() || it->second->generation != generation) return nullptr;
  shard.lru.splice(shard.lru.begin(), shard.lru, it->second);
  return it->second->answer;
}

void ResponseCache::Insert(int64_t generation, const std::string& key,
                           std::shared_ptr<const CachedAnswer> answer) {
  const size_t bytes =
      key.size() + answer->plain.body.size() + answer->gzip.size() + 256;  // + bookkeeping
  const size_t budget = max_bytes_ / kShards;
  if (max_bytes_ == 0 || bytes > budget) return;
  auto shared = std::move(answer);
  Shard& shard = ShardFor(key);
  std::lock_guard<std::mutex> lock(shard.mu);
  if (auto it = shard.index.find(key); it != shard.index.end()) {
    if (it->second->generation > generation) return;  // a newer answer is already here
    shard.bytes -= it->second->bytes;
    shard.lru.erase(it->second);
    shard.index.erase(it);
  }
  shard.lru.push_front(Entry{key, generation, std::move(shared), bytes});
  shard.index.emplace(key, shard.lru.begin());
  shard.bytes += bytes;
  // Evict from the cold end. Entries of an older generation are never found again, so
  // they drift there and go first.
  while (shard.bytes > budget && !shard.lru.empty()) {
    auto victim = std::prev(shard.lru.end());
    shard.bytes -= victim->bytes;
    shard.index.erase(victim->key);
    shard.lru.erase(victim);
  }
}

}  // namespace cellcube::server
