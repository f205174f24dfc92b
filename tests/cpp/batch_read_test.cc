// BatchRead: the same bytes through io_uring and through pread, and one error line for
// a read past the end of the file.
#include "store/batch_read.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <random>
#include <string>
#include <vector>

namespace cellcube {
namespace {

class BatchReadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char name[] = "/tmp/cellcube-batch-read-XXXXXX";
    fd_ = ::mkstemp(name);
    ASSERT_GE(fd_, 0);
    path_ = name;
    std::mt19937 rng(3);
    bytes_.resize(1 << 20);
    for (char& c : bytes_) c = static_cast<char>(rng());
    ASSERT_EQ(::write(fd_, bytes_.data(), bytes_.size()), static_cast<ssize_t>(bytes_.size()));
  }
  void TearDown() override {
    ::close(fd_);
    ::unlink(path_.c_str());
  }
  int fd_ = -1;
  std::string path_;
  std::string bytes_;
};

// Where the kernel refuses io_uring (sysctl kernel.io_uring_disabled, a container's
// seccomp profile), `true` runs the fallback too: a refused ring once closed the wrong
// file descriptor, which these reads caught.
TEST_F(BatchReadTest, BothWaysReadTheSameBytes) {
  for (bool uring : {true, false}) {
    BatchRead reads(fd_, uring);
    if (!uring) {
      EXPECT_FALSE(reads.uses_uring());
    }
    // More pieces than one ring holds, of every size up to 5,000 bytes, twice (the
    // queue is emptied by Finish and used again).
    std::mt19937 rng(uring ? 5 : 7);
    for (int round = 0; round < 2; ++round) {
      std::vector<std::string> got(700);
      std::vector<uint64_t> at(got.size());
      for (size_t i = 0; i < got.size(); ++i) {
        got[i].resize(1 + rng() % 5000);
        at[i] = rng() % (bytes_.size() - got[i].size());
        reads.Add(at[i], got[i].data(), got[i].size());
      }
      ASSERT_TRUE(reads.Finish().ok());
      for (size_t i = 0; i < got.size(); ++i)
        ASSERT_EQ(got[i], bytes_.substr(at[i], got[i].size())) << "piece " << i;
    }
  }
}

TEST_F(BatchReadTest, PastTheEndIsAnError) {
  for (bool uring : {true, false}) {
    BatchRead reads(fd_, uring);
    std::string a(100, '\0'), b(100, '\0');
    reads.Add(0, a.data(), a.size());
    reads.Add(bytes_.size() - 50, b.data(), b.size());
    Status s = reads.Finish();
    EXPECT_EQ(s.code(), StatusCode::kIoError) << s.message();
    EXPECT_NE(s.message().find("ended early"), std::string::npos) << s.message();
    // The queue is empty again: a good read afterwards succeeds.
    reads.Add(10, a.data(), a.size());
    EXPECT_TRUE(reads.Finish().ok());
    EXPECT_EQ(a, bytes_.substr(10, 100));
  }
}

}  // namespace
}  // namespace cellcube
