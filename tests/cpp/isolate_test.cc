#include "util/isolate.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <new>
#include <stdexcept>
#include <thread>
#include <utility>
#include <vector>

#include "util/text.h"

#if defined(__SANITIZE_ADDRESS__)
#define ISOLATE_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ISOLATE_TEST_ASAN 1
#endif
#endif

namespace cellcube {
namespace {

bool Has(const Status& s, const std::string& text) {
  return s.message().find(text) != std::string::npos;
}

TEST(IsolatedRun, ReturnsTheChildsStatus) {
  EXPECT_TRUE(RunIsolated([] { return Status::Ok(); }, {}).ok());
  Status s = RunIsolated([] { return Status::NotFound("no gene 'XYZ'"); }, {});
  EXPECT_EQ(s.code(), StatusCode::kNotFound);
  EXPECT_EQ(s.message(), "no gene 'XYZ'");
  EXPECT_FALSE(InIsolatedChild());
}

TEST(IsolatedRun, RunsInAnotherProcess) {
  const pid_t here = ::getpid();
  Status s = RunIsolated(
      [here] {
        if (!InIsolatedChild()) return Status::Internal("not marked as a child");
        return ::getpid() == here ? Status::Internal("same process") : Status::Ok();
      },
      {});
  EXPECT_TRUE(s.ok()) << s.message();
}

TEST(IsolatedRun, ACrashBecomesCorruptNamingTheFileBeingRead) {
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

TEST(IsolatedRun, ACrashOutsideAnyFileIsInternal) {
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

TEST(IsolatedRun, AnExitWithoutAnswerIsReported) {
  Status s = RunIsolated(
      [] {
        ::_exit(3);
        return Status::Ok();
      },
      {});
  EXPECT_EQ(s.code(), StatusCode::kInternal);
  EXPECT_NE(s.message().find("exit code 3"), std::string::npos) << s.message();
}

TEST(IsolatedRun, ExceptionsBecomeStatuses) {
  Status s = RunIsolated(
      []() -> Status {
        NoteReading("big.h5ad");
        throw std::bad_alloc();
      },
      {});
  EXPECT_EQ(s.code(), StatusCode::kOutOfMemory);
  EXPECT_TRUE(Has(s, "out of memory while reading 'big.h5ad'")) << s.message();
  s = RunIsolated([]() -> Status { throw std::runtime_error("boom"); }, {});
  EXPECT_EQ(s.code(), StatusCode::kInternal);
  EXPECT_TRUE(Has(s, "internal error: boom")) << s.message();
}

// RLIMIT_DATA in a release build; in a sanitizer build (whose shadow memory cannot live
// under RLIMIT_DATA) the parent's watch of the child's resident memory.
TEST(IsolatedRun, KeepsTheChildUnderTheMemoryLimit) {
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
  EXPECT_TRUE(Has(s, "of the 256.0 MiB limit")) << s.message();
  // Within the limit, the same work succeeds.
  options.memory_limit = uint64_t{1} << 30;
  s = RunIsolated(touch(128), options);
  EXPECT_TRUE(s.ok()) << s.message();
}

// Allocates (and touches) 1 MiB blocks with operator new until `mib` are held.
void AllocateWithNew(uint64_t mib) {
  std::vector<std::unique_ptr<char[]>> blocks;
  for (uint64_t i = 0; i < mib; ++i) {
    blocks.emplace_back(new char[1 << 20]);
    std::memset(blocks.back().get(), 1, 1 << 20);
  }
}

// Before the new_handler, a bad_alloc in a worker thread escaped the thread: SIGABRT,
// reported as a crash blaming the file being read.
TEST(IsolatedRun, OutOfMemoryInAWorkerThreadSaysWhatItWasDoing) {
  IsolationOptions options;
  options.memory_limit = uint64_t{64} << 20;
  options.memory_limit_option = "--memory-limit";
  Status s = RunIsolated(
      [] {
        NoteReading("input.h5ad");
        NoteActivity("aggregating dataset 'x'");
        std::thread worker([] { AllocateWithNew(4096); });
        worker.join();
        return Status::Internal("4 GiB allocated under a 64 MiB limit");
      },
      options);
  EXPECT_EQ(s.code(), StatusCode::kOutOfMemory) << s.message();
  EXPECT_TRUE(Has(s, "out of memory while aggregating dataset 'x' (used ")) << s.message();
  EXPECT_TRUE(Has(s,
                  " of the 64.0 MiB limit); --memory-limit SIZE (or CELLCUBE_MEMORY_LIMIT) "
                  "gives it more, e.g. --memory-limit 128M"))
      << s.message();
  EXPECT_FALSE(Has(s, "damaged")) << s.message();
  EXPECT_FALSE(Has(s, "SIG")) << s.message();
}

TEST(IsolatedRun, TheNewHandlerReportsOutOfMemoryFromAnyThread) {
  IsolationOptions options;
  options.memory_limit = uint64_t{1} << 30;
  Status s = RunIsolated(
      [] {
        NoteReading("big.h5ad");  // no activity noted: the file being read is named
        std::thread worker([] {
          std::new_handler handler = std::get_new_handler();
          if (handler) handler();  // what operator new does when the allocation fails
        });
        worker.join();
        return Status::Internal("no new_handler in the child");
      },
      options);
  EXPECT_EQ(s.code(), StatusCode::kOutOfMemory) << s.message();
  EXPECT_TRUE(Has(s, "out of memory while reading 'big.h5ad' (used ")) << s.message();
  EXPECT_TRUE(Has(s,
                  " of the 1.0 GiB limit); CELLCUBE_MEMORY_LIMIT=SIZE gives it more, "
                  "e.g. CELLCUBE_MEMORY_LIMIT=2G"))
      << s.message();
  EXPECT_EQ(std::get_new_handler(), nullptr);  // the caller's is untouched
}

TEST(IsolatedRun, OutOfMemoryRemovesTheTemporaryFile) {
  const std::string path = ::testing::TempDir() + "isolate_test.tmp-" + std::to_string(::getpid());
  Status s = RunIsolated(
      [&path] {
        NoteTemporaryFile(path);
        if (FILE* f = std::fopen(path.c_str(), "w")) std::fclose(f);
        NoteActivity("writing the store");
        std::get_new_handler()();
        return Status::Internal("no new_handler in the child");
      },
      {});
  EXPECT_EQ(s.code(), StatusCode::kOutOfMemory) << s.message();
  EXPECT_TRUE(Has(s, "out of memory while writing the store (used ")) << s.message();
  EXPECT_TRUE(Has(s, "no memory limit was set")) << s.message();
  EXPECT_NE(::access(path.c_str(), F_OK), 0) << path << " was left behind";
}

TEST(IsolatedRun, AnAllocationRefusedByTheLimitIsOutOfMemory) {
#ifdef ISOLATE_TEST_ASAN
  GTEST_SKIP() << "ASan reports a refused allocation itself instead of calling new_handler";
#else
  static char* volatile escape = nullptr;  // keeps the compiler from eliding the new
  IsolationOptions options;
  options.memory_limit = uint64_t{64} << 20;
  Status s = RunIsolated(
      [] {
        NoteActivity("writing the store");
        std::thread worker([] {
          escape = new char[size_t{1} << 30];  // 1 GiB: refused under 64 MiB at once
          delete[] escape;
        });
        worker.join();
        return Status::Internal("1 GiB allocated under a 64 MiB limit");
      },
      options);
  EXPECT_EQ(s.code(), StatusCode::kOutOfMemory) << s.message();
  EXPECT_TRUE(Has(s, "out of memory while writing the store (used ")) << s.message();
#endif
}

// Runs `work` isolated with stuck_after_ms = 200, each fork of it appending a byte to a
// temporary file; returns the Status and how many forks ran.
std::pair<Status, off_t> RunCountingForks(const std::function<void()>& work) {
  char path[] = "/tmp/cellcube-forks-XXXXXX";
  const int fd = ::mkstemp(path);
  if (fd < 0) return {Status::IoError("mkstemp"), 0};
  IsolationOptions options;
  options.stuck_after_ms = 200;
  Status s = RunIsolated(
      [fd, &work] {
        if (::write(fd, "x", 1) != 1) return Status::IoError("write");
        work();
        return Status::Ok();
      },
      options);
  const off_t forks = ::lseek(fd, 0, SEEK_END);
  ::close(fd);
  ::unlink(path);
  return {s, forks};
}

// A child that sleeps without answering looks like one stuck on the sanitizer's
// allocator lock (IsolationOptions::stuck_after_ms): sanitizer builds kill it and fork
// again, 11 times in all, then give up; release builds wait for it.
TEST(IsolatedRun, AChildAsleepWithoutAnsweringIsForkedAgainUnderASan) {
  auto [s, forks] = RunCountingForks([] { ::usleep(600 * 1000); });
#ifdef ISOLATE_TEST_ASAN
  EXPECT_EQ(s.code(), StatusCode::kInternal) << s.message();
  EXPECT_TRUE(Has(s, "stuck")) << s.message();
  EXPECT_EQ(forks, 11);
#else
  EXPECT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(forks, 1);
#endif
}

// A child at work uses CPU time, however long it takes: never taken for a stuck one.
TEST(IsolatedRun, ABusyChildIsNotTakenForAStuckOne) {
  auto [s, forks] = RunCountingForks([] {
    const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(800);
    volatile uint64_t spin = 0;
    while (std::chrono::steady_clock::now() < end) spin = spin + 1;
  });
  EXPECT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(forks, 1);
}

TEST(IsolatedRun, AnExceptionEscapingAThreadIsInternalNotACrash) {
  Status s = RunIsolated(
      [] {
        NoteReading("good.h5ad");
        std::thread worker([] { throw std::runtime_error("boom"); });
        worker.join();
        return Status::Ok();
      },
      {});
  EXPECT_EQ(s.code(), StatusCode::kInternal) << s.message();
  EXPECT_TRUE(Has(s, "internal error: uncaught exception (boom) while reading 'good.h5ad'"))
      << s.message();
  EXPECT_FALSE(Has(s, "damaged")) << s.message();
  EXPECT_FALSE(Has(s, "SIGABRT")) << s.message();
}

TEST(IsolatedRun, TheChildKnowsItsMemoryLimit) {
  EXPECT_EQ(MemoryLimitInForce(), 0u);
  NoteActivity("ignored outside a child");  // a no-op here
  IsolationOptions options;
  options.memory_limit = uint64_t{3} << 30;
  EXPECT_TRUE(RunIsolated(
                  [] {
                    return MemoryLimitInForce() == uint64_t{3} << 30
                               ? Status::Ok()
                               : Status::Internal(std::to_string(MemoryLimitInForce()));
                  },
                  options)
                  .ok());
  EXPECT_TRUE(RunIsolated(
                  [] {
                    return MemoryLimitInForce() == 0 ? Status::Ok()
                                                     : Status::Internal("a limit without one");
                  },
                  {})
                  .ok());
}

class IsolatedMemoryLimit : public ::testing::Test {
 protected:
  void TearDown() override { ::unsetenv("CELLCUBE_MEMORY_LIMIT"); }
  static Result<uint64_t> With(const char* value) {
    ::setenv("CELLCUBE_MEMORY_LIMIT", value, 1);
    return DefaultMemoryLimit();
  }
};

TEST_F(IsolatedMemoryLimit, ParsesSizesWithBinarySuffixes) {
  EXPECT_EQ(With("8G").value(), uint64_t{8} << 30);
  EXPECT_EQ(With("512m").value(), uint64_t{512} << 20);
  EXPECT_EQ(With("1.5GiB").value(), uint64_t{3} << 29);
  EXPECT_EQ(With("2097152").value(), uint64_t{2} << 20);
  EXPECT_EQ(With("off").value(), 0u);
  EXPECT_EQ(With("none").value(), 0u);
  EXPECT_EQ(ParseMemoryLimit("40M", "--memory-limit").value(), uint64_t{40} << 20);
  EXPECT_EQ(ParseMemoryLimit("OFF", "--memory-limit").value(), 0u);
}

TEST_F(IsolatedMemoryLimit, RefusesNonsense) {
  for (const char* bad : {"lots", "8X", "-1G", "12k", "G", "1e30", ""}) {
    auto r = With(bad);
    if (*bad == '\0') {  // an empty variable is no variable
      EXPECT_EQ(r.value(), uint64_t{2} << 30);
      continue;
    }
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), StatusCode::kUsage);
    EXPECT_NE(r.status().message().find("CELLCUBE_MEMORY_LIMIT"), std::string::npos);
    auto option = ParseMemoryLimit(bad, "--memory-limit");
    ASSERT_FALSE(option.ok()) << bad;
    EXPECT_EQ(option.status().code(), StatusCode::kUsage);
    EXPECT_NE(option.status().message().find("e.g. --memory-limit 8G"), std::string::npos)
        << option.status().message();
  }
}

TEST_F(IsolatedMemoryLimit, DefaultIsTwoGiBWhateverTheInputs) {
  ::unsetenv("CELLCUBE_MEMORY_LIMIT");
  EXPECT_EQ(DefaultMemoryLimit().value(), uint64_t{2} << 30);
  EXPECT_EQ(With("8G").value(), uint64_t{8} << 30);
  EXPECT_EQ(DefaultMemoryLimit().value(), uint64_t{8} << 30);
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
