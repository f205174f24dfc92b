#include "util/isolate.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <mutex>
#include <new>

#include "util/text.h"

#if defined(__SANITIZE_ADDRESS__)
#define CELLCUBE_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CELLCUBE_ASAN 1
#endif
#endif

namespace cellcube {
namespace {

// What the child writes down for the parent to read after it died: the file it is
// reading (for the message) and the temporary file it is writing (to remove).
// MAP_SHARED, so it survives whatever the child's heap turned into.
struct NotedPath {
  uint32_t length;
  char path[4092];

  void Set(const std::string& p) {
    const size_t n = std::min(p.size(), sizeof path);
    std::memcpy(path, p.data(), n);
    length = static_cast<uint32_t>(n);
  }
  std::string Get() const { return std::string(path, std::min<uint32_t>(length, sizeof path)); }
};

struct SharedNote {
  NotedPath reading;
  NotedPath temporary;
};

SharedNote* g_note = nullptr;  // non-null only in a RunIsolated child
std::mutex g_note_mutex;

constexpr int kForwarded[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
volatile sig_atomic_t g_child_pid = 0;
volatile sig_atomic_t g_received = 0;

void ForwardToChild(int sig) {
  g_received = sig;
  if (g_child_pid > 0) ::kill(g_child_pid, sig);
}

bool WriteAll(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

// A "Vm...:  N kB" field of a /proc/PID/status file, in bytes (0 if unknown).
uint64_t StatusBytes(const std::string& status_file, const std::string& field) {
  std::ifstream in(status_file);
  std::string key;
  uint64_t kb = 0;
  while (in >> key) {
    if (key == field && in >> kb) return kb << 10;
    in.ignore(1 << 12, '\n');
  }
  return 0;
}

// The process's data segment: what RLIMIT_DATA counts.
[[maybe_unused]] uint64_t DataSegmentBytes() { return StatusBytes("/proc/self/status", "VmData:"); }

void LimitMemory(uint64_t extra) {
#ifndef CELLCUBE_ASAN
  if (extra == 0) return;
  struct rlimit r {};
  r.rlim_cur = r.rlim_max = DataSegmentBytes() + extra;
  ::setrlimit(RLIMIT_DATA, &r);  // best effort: without it the kernel's OOM killer is the limit
#else
  (void)extra;
#endif
}

void ResetSignalsInChild() {
  for (int sig : kForwarded) ::signal(sig, SIG_DFL);
  sigset_t none;
  sigemptyset(&none);
  ::pthread_sigmask(SIG_SETMASK, &none, nullptr);
}

// Status on the wire: code (uint32), message length (uint32), message bytes.
std::string Encode(const Status& s) {
  const uint32_t header[2] = {static_cast<uint32_t>(s.code()),
                              static_cast<uint32_t>(s.message().size())};
  std::string out(reinterpret_cast<const char*>(header), sizeof header);
  return out + s.message();
}

bool Decode(const std::string& wire, Status* out) {
  uint32_t header[2];
  if (wire.size() < sizeof header) return false;
  std::memcpy(header, wire.data(), sizeof header);
  if (wire.size() != sizeof header + header[1]) return false;
  if (header[0] == 0) {
    *out = Status::Ok();
    return header[1] == 0;
  }
  if (header[0] > static_cast<uint32_t>(StatusCode::kInternal)) return false;
  *out = Status::FromCode(static_cast<StatusCode>(header[0]), wire.substr(sizeof header));
  return true;
}

[[noreturn]] void RunChild(int status_fd, SharedNote* note, pid_t parent,
                           const std::function<Status()>& work, const IsolationOptions& options) {
  g_note = note;
  // Die with the caller: a killed command must not leave its worker finishing a store.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != parent) ::_exit(127);
  ResetSignalsInChild();
  LimitMemory(options.memory_limit);
  Status s;
  try {
    s = work();
  } catch (const std::bad_alloc&) {
    s = Status::OutOfMemory("out of memory");
  } catch (const std::exception& e) {
    s = Status::Internal(std::string("internal error: ") + e.what());
  }
  std::cout.flush();
  std::cerr.flush();
  std::fflush(nullptr);
  const std::string wire = Encode(s);
  ::_exit(WriteAll(status_fd, wire.data(), wire.size()) ? 0 : 126);
}

uint64_t ResidentBytes(pid_t pid) {
  return StatusBytes("/proc/" + std::to_string(pid) + "/status", "VmRSS:");
}

// Reads the child's report until it closes the pipe. With `rss_limit` (sanitizer
// builds, where RLIMIT_DATA cannot apply), checks the child's resident memory ten times
// a second and kills it past the limit, setting *over_limit.
std::string ReadReport(int fd, pid_t pid, uint64_t rss_limit, bool* over_limit) {
  std::string out;
  char buf[4096];
  for (;;) {
    struct pollfd p {};
    p.fd = fd;
    p.events = POLLIN;
    const int ready = ::poll(&p, 1, rss_limit ? 100 : -1);
    if (ready < 0 && errno != EINTR) return out;
    if (ready <= 0) {
      if (rss_limit && !*over_limit && ResidentBytes(pid) > rss_limit) {
        *over_limit = true;
        ::kill(pid, SIGKILL);
      }
      continue;
    }
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return out;
    out.append(buf, static_cast<size_t>(n));
  }
}

int WaitFor(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return status;
}

std::string SignalName(int sig) {
  const char* abbrev = ::sigabbrev_np(sig);
  const char* text = ::strsignal(sig);
  std::string name = abbrev ? std::string("SIG") + abbrev : "signal " + std::to_string(sig);
  return text ? name + ", " + ToLower(text) : name;
}

std::string ReadingWhat(const SharedNote* note) {
  const std::string path = note->reading.Get();
  return path.empty() ? std::string() : " while reading '" + path + "'";
}

// What to say when the child died without reporting a Status.
Status Death(int status, const SharedNote* note) {
  const std::string reading = ReadingWhat(note);
  if (WIFEXITED(status))
    return Status::Internal("stopped unexpectedly (exit code " +
                            std::to_string(WEXITSTATUS(status)) + ")" + reading);
  const int sig = WTERMSIG(status);
  if (sig == SIGKILL)
    return Status::OutOfMemory("was killed (SIGKILL)" + reading +
                               ", most likely by the kernel for lack of memory");
  if (sig == SIGINT || sig == SIGTERM || sig == SIGHUP || sig == SIGQUIT || sig == SIGPIPE)
    return Status::IoError("was stopped by " + SignalName(sig) + reading);
  if (reading.empty())
    return Status::Internal("crashed (" + SignalName(sig) + "); please report this");
  return Status::Corrupt("crashed (" + SignalName(sig) + ")" + reading +
                         ": its HDF5 structure is most likely damaged in a way libhdf5 does not "
                         "survive; check it with 'h5dump -H', then re-create or re-download it");
}

}  // namespace

bool InIsolatedChild() { return g_note != nullptr; }

void NoteReading(const std::string& path) {
  if (!g_note) return;
  std::lock_guard<std::mutex> lock(g_note_mutex);
  g_note->reading.Set(path);
}

void NoteTemporaryFile(const std::string& path) {
  if (!g_note) return;
  std::lock_guard<std::mutex> lock(g_note_mutex);
  g_note->temporary.Set(path);
}

Status RunIsolated(const std::function<Status()>& work, const IsolationOptions& options) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0)
    return Status::IoError(std::string("cannot create a pipe: ") + std::strerror(errno));
  void* page = ::mmap(nullptr, sizeof(SharedNote), PROT_READ | PROT_WRITE,
                      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (page == MAP_FAILED) {
    ::close(fds[0]);
    ::close(fds[1]);
    return Status::IoError(std::string("cannot map a page: ") + std::strerror(errno));
  }
  auto* note = static_cast<SharedNote*>(page);
  // Output buffered now would otherwise be written twice, by the child and by us.
  std::cout.flush();
  std::fflush(nullptr);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    RunChild(fds[1], note, parent, work, options);
  }
  ::close(fds[1]);
  if (pid < 0) {
    const int err = errno;
    ::close(fds[0]);
    ::munmap(page, sizeof(SharedNote));
    return Status::IoError(std::string("cannot start a process: ") + std::strerror(err));
  }
  struct sigaction saved[std::size(kForwarded)];
  if (options.forward_signals) {
    g_received = 0;
    g_child_pid = pid;
    struct sigaction forward {};
    forward.sa_handler = ForwardToChild;
    sigemptyset(&forward.sa_mask);
    forward.sa_flags = SA_RESTART;
    for (size_t i = 0; i < std::size(kForwarded); ++i)
      ::sigaction(kForwarded[i], &forward, &saved[i]);
  }
#ifdef CELLCUBE_ASAN
  const uint64_t rss_limit = options.memory_limit;
#else
  const uint64_t rss_limit = 0;  // RLIMIT_DATA holds the child
#endif
  bool over_limit = false;
  const std::string wire = ReadReport(fds[0], pid, rss_limit, &over_limit);
  ::close(fds[0]);
  const int status = WaitFor(pid);
  if (options.forward_signals) {
    g_child_pid = 0;
    for (size_t i = 0; i < std::size(kForwarded); ++i)
      ::sigaction(kForwarded[i], &saved[i], nullptr);
  }
  Status result;
  const bool reported = !over_limit && Decode(wire, &result);
  if (!reported) {
    // The child cannot clean up after itself any more: a partial file must not stay.
    if (const std::string temporary = note->temporary.Get(); !temporary.empty())
      ::unlink(temporary.c_str());
    const int sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    // Asked to stop (or our output went away): stop the same way, silently.
    if (!over_limit && options.forward_signals && sig != 0 &&
        (sig == g_received || sig == SIGPIPE)) {
      ::munmap(page, sizeof(SharedNote));
      ::signal(sig, SIG_DFL);
      ::raise(sig);
    }
    result = over_limit ? Status::OutOfMemory("out of memory") : Death(status, note);
  }
  if (result.code() == StatusCode::kOutOfMemory && (over_limit || reported)) {
    const std::string limit =
        options.memory_limit ? " (memory limit " + FormatBinaryBytes(options.memory_limit) + ")"
                             : std::string();
    result = Status::OutOfMemory(result.message() + ReadingWhat(note) + limit);
  }
  ::munmap(page, sizeof(SharedNote));
  return result;
}

Result<uint64_t> MemoryLimitFor(uint64_t input_bytes) {
  if (const char* env = std::getenv("CELLCUBE_MEMORY_LIMIT"); env && *env) {
    const std::string text = ToLower(env);
    if (text == "off" || text == "none" || text == "0") return uint64_t{0};
    char* end = nullptr;
    errno = 0;
    const double number = std::strtod(text.c_str(), &end);
    const std::string suffix = end ? std::string(end) : std::string();
    double scale = 0;
    if (suffix.empty() || suffix == "b")
      scale = 1;
    else if (suffix == "k" || suffix == "kb" || suffix == "kib")
      scale = 1024.0;
    else if (suffix == "m" || suffix == "mb" || suffix == "mib")
      scale = 1024.0 * 1024;
    else if (suffix == "g" || suffix == "gb" || suffix == "gib")
      scale = 1024.0 * 1024 * 1024;
    else if (suffix == "t" || suffix == "tb" || suffix == "tib")
      scale = 1024.0 * 1024 * 1024 * 1024;
    const double bytes = number * scale;
    if (end == text.c_str() || errno != 0 || scale == 0 || !(bytes >= 1 << 20) || bytes > 1e18)
      return Status::Usage("CELLCUBE_MEMORY_LIMIT='" + std::string(env) +
                           "' is not a size of at least 1M (examples: 8G, 512M, off)");
    return static_cast<uint64_t>(bytes);
  }
  constexpr uint64_t kBase = uint64_t{4} << 30;
  const uint64_t wanted =
      kBase + (input_bytes > (uint64_t{1} << 60) ? (uint64_t{1} << 61) : 2 * input_bytes);
  const long pages = ::sysconf(_SC_PHYS_PAGES);
  const long page_size = ::sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page_size <= 0) return wanted;
  const uint64_t physical = static_cast<uint64_t>(pages) * static_cast<uint64_t>(page_size);
  return std::min(wanted, physical / 10 * 9);
}

}  // namespace cellcube
