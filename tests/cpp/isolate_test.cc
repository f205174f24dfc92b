#include "util/isolate.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#include "util/text.h"

namespace cellcube {
namespace {

TEST(RunIsolated, ReturnsTheChildsStatus) {
  EXPECT_TRUE(RunIsolated([] { return Status::Ok(); }, {}).ok());
  Status s = RunIsolated([] { return Status::NotFound("no gene 'XYZ'"); }, {});
  EXPECT_EQ(s.code(), StatusCode::kNotFound);
  EXPECT_EQ(s.message(), "no gene 'XYZ'");
  EXPECT_FALSE(InIsolatedChild());
}

TEST(RunIsolated, RunsInAnotherProcess) {
  const pid_t here = ::getpid();
  Status s = RunIsolated(
      [here] {
        if (!InIsolatedChild()) return Status::Internal("not marked as a child");
        return ::getpid() == here ? Status::Internal("same process") : Status::Ok();
      },
      {});
  EXPECT_TRUE(s.ok()) << s.message();
}

TEST(RunIsolated, ACrashBecomesCorruptNamingTheFileBeingRead) {
  Status s = RunIsolated(
      [] {
        NoteReading("/data/first.h5ad");
        NoteReading("/data/damaged.h5ad");
        std::signal(SIGSEGV, SIG_DFL);  // sanitizers catch SIGSEGV themselves
        ::raise(SIGSEGV);
        return Status::Ok();
      },
      {});
  EXPECT_EQ(s.code(), StatusCode::kCorrupt) << s.message();
  EXPECT_NE(s.message().find("SIGSEGV"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("'/data/damaged.h5ad'"), std::string::npos) << s.message();
  EXPECT_EQ(s.message().find("first"), std::string::npos) << s.message();
}

TEST(RunIsolated, ACrashOutsideAnyFileIsInternal) {
  Status s = RunIsolated(
      [] {
        std::signal(SIGABRT, SIG_DFL);
        ::raise(SIGABRT);
        return Status::Ok();
      },
      {});
  EXPECT_EQ(s.code(), StatusCode::kInternal) << s.message();
  EXPECT_NE(s.message().find("SIGABRT"), std::string::npos) << s.message();
}

TEST(RunIsolated, AnExitWithoutAnswerIsReported) {
  Status s = RunIsolated(
      [] {
        ::_exit(3);
        return Status::Ok();
      },
      {});
  EXPECT_EQ(s.code(), StatusCode::kInternal);
  EXPECT_NE(s.message().find("exit code 3"), std::string::npos) << s.message();
}

TEST(RunIsolated, ExceptionsBecomeStatuses) {
  Status s = RunIsolated(
      []() -> Status {
        NoteReading("big.h5ad");
        throw std::bad_alloc();
      },
      {});
  EXPECT_EQ(s.code(), StatusCode::kOutOfMemory);
  EXPECT_NE(s.message().find("while reading 'big.h5ad'"), std::string::npos) << s.message();
}

// RLIMIT_DATA in a release build; in a sanitizer build (whose shadow memory cannot live
// under RLIMIT_DATA) the parent's watch of the child's resident memory.
TEST(RunIsolated, KeepsTheChildUnderTheMemoryLimit) {
  const auto touch = [](uint64_t mib) {
    return [mib] {
      std::vector<char*> blocks;
      for (uint64_t i = 0; i < mib; ++i) {
        char* p = static_cast<char*>(std::malloc(1 << 20));
        if (!p) return Status::OutOfMemory("out of memory");
        std::memset(p, 1, 1 << 20);
        blocks.push_back(p);
      }
      for (char* p : blocks) std::free(p);
      return Status::Ok();
    };
  };
  IsolationOptions options;
  options.memory_limit = uint64_t{256} << 20;
  Status s = RunIsolated(touch(2048), options);
  EXPECT_EQ(s.code(), StatusCode::kOutOfMemory) << s.message();
  EXPECT_NE(s.message().find("256.0 MiB"), std::string::npos) << s.message();
  // Within the limit, the same work succeeds.
  options.memory_limit = uint64_t{1} << 30;
  s = RunIsolated(touch(128), options);
  EXPECT_TRUE(s.ok()) << s.message();
}

class MemoryLimitEnv : public ::testing::Test {
 protected:
  void TearDown() override { ::unsetenv("CELLCUBE_MEMORY_LIMIT"); }
  static Result<uint64_t> With(const char* value) {
    ::setenv("CELLCUBE_MEMORY_LIMIT", value, 1);
    return MemoryLimitFor(0);
  }
};

TEST_F(MemoryLimitEnv, ParsesSizesWithBinarySuffixes) {
  EXPECT_EQ(With("8G").value(), uint64_t{8} << 30);
  EXPECT_EQ(With("512m").value(), uint64_t{512} << 20);
  EXPECT_EQ(With("1.5GiB").value(), uint64_t{3} << 29);
  EXPECT_EQ(With("2097152").value(), uint64_t{2} << 20);
  EXPECT_EQ(With("off").value(), 0u);
  EXPECT_EQ(With("none").value(), 0u);
}

TEST_F(MemoryLimitEnv, RefusesNonsense) {
  for (const char* bad : {"lots", "8X", "-1G", "12k", "G", "1e30"}) {
    auto r = With(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), StatusCode::kUsage);
    EXPECT_NE(r.status().message().find("CELLCUBE_MEMORY_LIMIT"), std::string::npos);
  }
}

TEST_F(MemoryLimitEnv, DefaultGrowsWithTheInputsUpToPhysicalMemory) {
  ::unsetenv("CELLCUBE_MEMORY_LIMIT");
  const uint64_t physical = static_cast<uint64_t>(::sysconf(_SC_PHYS_PAGES)) *
                            static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  const uint64_t small = MemoryLimitFor(1000).value();
  EXPECT_EQ(small, std::min<uint64_t>((uint64_t{4} << 30) + 2000, physical / 10 * 9));
  EXPECT_GE(MemoryLimitFor(uint64_t{1} << 30).value(), small);
  EXPECT_EQ(MemoryLimitFor(uint64_t{1} << 50).value(), physical / 10 * 9);
}

TEST(PrintableLine, EscapesControlAndInvalidBytesAndCuts) {
  EXPECT_EQ(PrintableLine("plain 'CD3E' µ", 100), "plain 'CD3E' µ");
  EXPECT_EQ(PrintableLine(std::string("a\nb\x01\xff", 5), 100), "a\\x0Ab\\x01\\xFF");
  EXPECT_EQ(PrintableLine("\xe0\x80\x80", 100), "\\xE0\\x80\\x80");  // overlong
  EXPECT_EQ(PrintableLine(std::string(50, 'x'), 10), std::string(10, 'x') + "...");
  EXPECT_TRUE(ValidUtf8("µ CD3E"));
  EXPECT_FALSE(ValidUtf8("\xed\xa0\x80"));  // a surrogate
}

}  // namespace
}  // namespace cellcube
