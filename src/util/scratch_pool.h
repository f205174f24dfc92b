// Reusable scratch buffers for calls that may run on any thread, nest, or run at once:
// a call takes a buffer set for its duration (Lease) and gives it back when done. The
// buffers keep their capacity between calls (fresh pages cost more than the work of a
// small query), and there are only as many sets as calls ever ran at once.
//
// Thread safety: Take may be called from any thread; a lease is used by one call.
#pragma once

#include <memory>
#include <mutex>
#include <vector>

namespace cellcube {

template <typename T>
class ScratchPool {
 public:
  class Lease {
   public:
    Lease(ScratchPool* pool, std::unique_ptr<T> item) : pool_(pool), item_(std::move(item)) {}
    Lease(Lease&&) = default;
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    ~Lease() {
      if (item_) pool_->Return(std::move(item_));
    }
    T& operator*() const { return *item_; }
    T* operator->() const { return item_.get(); }

   private:
    ScratchPool* pool_;
    std::unique_ptr<T> item_;
  };

  // The most recently returned set (its buffers, and whatever it remembers of the last
  // call, are the likeliest to fit the next), or a new one.
  Lease Take() {
    std::lock_guard<std::mutex> lock(mu_);
    if (free_.empty()) return Lease(this, std::make_unique<T>());
    std::unique_ptr<T> item = std::move(free_.back());
    free_.pop_back();
    return Lease(this, std::move(item));
  }

 private:
  void Return(std::unique_ptr<T> item) {
    std::lock_guard<std::mutex> lock(mu_);
    free_.push_back(std::move(item));
  }

  std::mutex mu_;
  std::vector<std::unique_ptr<T>> free_;
};

}  // namespace cellcube
