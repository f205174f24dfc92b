#include "util/isolate.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <mutex>
#include <new>
#include <sstream>
#include <system_error>

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
// reading and what it is doing (for the message), the temporary file it is writing (to
// remove), and whether it left for lack of memory or through std::terminate. MAP_SHARED,
// so it survives whatever the child's heap turned into. Written without allocating.
struct NotedPath {
  uint32_t length;
  char path[4092];

  void Set(const char* p, size_t n) {
    n = std::min(n, sizeof path);
    std::memcpy(path, p, n);
    length = static_cast<uint32_t>(n);
  }
  void Set(const std::string& p) { Set(p.data(), p.size()); }
  std::string Get() const { return std::string(path, std::min<uint32_t>(length, sizeof path)); }
};

struct SharedNote {
  NotedPath reading;
  NotedPath temporary;
  NotedPath activity;
  NotedPath terminate_reason;                // the exception that reached std::terminate
  std::atomic<uint32_t> out_of_memory{0};    // set when an allocation failed
  std::atomic<uint32_t> terminated{0};       // set by the child's terminate handler
  uint64_t start_resident = 0;               // the child's resident bytes when it started
  uint64_t start_data = 0;                   // its data segment then (VmData)
  std::atomic<uint64_t> data_at_failure{0};  // its data segment when an allocation failed
};

// How the child leaves when it cannot report a Status (the shared page says why; the
// exit codes only make a stray exit recognisable in a process listing).
constexpr int kOutOfMemoryExit = 125;
constexpr int kTerminateExit = 124;

SharedNote* g_note = nullptr;   // non-null only in a RunIsolated child
uint64_t g_limit_in_force = 0;  // the child's IsolationOptions::memory_limit
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

// The process's data segment (VmData: what RLIMIT_DATA counts), in bytes; 0 if unknown.
// Allocates nothing, for the out-of-memory handlers.
uint64_t DataSegmentBytes() {
  char buf[8192];
  const int fd = ::open("/proc/self/status", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  size_t n = 0;
  for (;;) {
    const ssize_t r = ::read(fd, buf + n, sizeof buf - 1 - n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    n += static_cast<size_t>(r);
    if (n == sizeof buf - 1) break;
  }
  ::close(fd);
  buf[n] = '\0';
  const char* p = std::strstr(buf, "\nVmData:");
  if (!p) return 0;
  p += 8;
  while (*p == ' ' || *p == '\t') ++p;
  uint64_t kb = 0;
  for (; *p >= '0' && *p <= '9'; ++p) kb = kb * 10 + static_cast<uint64_t>(*p - '0');
  return kb << 10;
}

void LimitMemory(uint64_t base, uint64_t extra) {
#ifndef CELLCUBE_ASAN
  if (extra == 0) return;
  struct rlimit r {};
  r.rlim_cur = r.rlim_max = base + extra;
  ::setrlimit(RLIMIT_DATA, &r);  // best effort: without it the kernel's OOM killer is the limit
#else
  (void)base;
  (void)extra;
#endif
}

// True when the data segment is within a thread stack or so of RLIMIT_DATA: a failure
// that does not say why (a thread that could not start, std::terminate while such an
// error unwinds) is then the limit. Allocates nothing.
bool NearDataLimit() {
  struct rlimit r {};
  if (::getrlimit(RLIMIT_DATA, &r) != 0 || r.rlim_cur == RLIM_INFINITY) return false;
  constexpr uint64_t kSlack = uint64_t{16} << 20;  // a thread's stack is 8 MiB
  return DataSegmentBytes() + kSlack >= static_cast<uint64_t>(r.rlim_cur);
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

// Records in the shared page that the child ran out of memory, and its data segment
// now. Allocates nothing.
void NoteOutOfMemory() {
  if (!g_note) return;
  g_note->data_at_failure.store(DataSegmentBytes());
  g_note->out_of_memory.store(1);
}

// The child's std::new_handler: an allocation failed (the memory limit, or the machine's
// memory), in whatever thread. Unwinding a bad_alloc from a worker thread would reach
// std::terminate (SIGABRT, reported as a crash on the file being read); instead the
// shared page says "out of memory" and the child leaves at once.
[[noreturn]] void OnOutOfMemory() {
  NoteOutOfMemory();
  ::_exit(kOutOfMemoryExit);
}

// A system_error that means memory: ENOMEM, or EAGAIN near the limit (std::thread
// reports a thread stack refused under RLIMIT_DATA as EAGAIN).
bool IsOutOfMemoryError(const std::error_code& code) {
  return code == std::errc::not_enough_memory ||
         (code == std::errc::resource_unavailable_try_again && NearDataLimit());
}

// The child's std::terminate handler: an exception escaped a thread (or a noexcept
// function). That is a bug in cellcube, or memory, never a damaged input: say so instead
// of dying of SIGABRT.
[[noreturn]] void OnTerminate() {
  // Without an exception to look at (a joinable std::thread destroyed while an error
  // unwinds, typically one that could not start), the limit is the likely cause.
  if (!std::current_exception() && NearDataLimit()) OnOutOfMemory();
  if (g_note) {
    g_note->terminate_reason.Set("", 0);  // none: std::terminate without an exception
    if (std::exception_ptr e = std::current_exception()) {
      try {
        std::rethrow_exception(e);
      } catch (const std::bad_alloc&) {
        OnOutOfMemory();
      } catch (const std::system_error& error) {
        if (IsOutOfMemoryError(error.code())) OnOutOfMemory();
        g_note->terminate_reason.Set(error.what(), std::strlen(error.what()));
      } catch (const std::exception& error) {
        g_note->terminate_reason.Set(error.what(), std::strlen(error.what()));
      } catch (...) {
        static const char kOther[] = "of unknown type";
        g_note->terminate_reason.Set(kOther, sizeof kOther - 1);
      }
    }
    g_note->terminated.store(1);
  }
  ::_exit(kTerminateExit);
}

[[noreturn]] void RunChild(int status_fd, SharedNote* note, pid_t parent,
                           const std::function<Status()>& work, const IsolationOptions& options) {
  g_note = note;
  g_limit_in_force = options.memory_limit;
  // Die with the caller: a killed command must not leave its worker finishing a store.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != parent) ::_exit(127);
  ResetSignalsInChild();
  note->start_resident = StatusBytes("/proc/self/status", "VmRSS:");
  note->start_data = DataSegmentBytes();
  LimitMemory(note->start_data, options.memory_limit);
  std::set_new_handler(OnOutOfMemory);
  std::set_terminate(OnTerminate);
  Status s;
  try {
    s = work();
  } catch (const std::bad_alloc&) {  // thrown by hand, not by a failed operator new
    NoteOutOfMemory();
    s = Status::OutOfMemory("out of memory");
  } catch (const std::system_error& e) {
    if (IsOutOfMemoryError(e.code())) {
      NoteOutOfMemory();
      s = Status::OutOfMemory("out of memory");
    } else {
      s = Status::Internal(std::string("internal error: ") + e.what());
    }
  } catch (const std::exception& e) {
    s = Status::Internal(std::string("internal error: ") + e.what());
  } catch (...) {
    s = Status::Internal("internal error: an exception of unknown type");
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

// The CPU time (user + system, in clock ticks) of `pid` so far and whether it sleeps
// ('S') now, from /proc/PID/stat; false when unknown.
bool CpuTicksAndSleeping(pid_t pid, uint64_t* ticks, bool* sleeping) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return false;
  // The command name (field 2) may hold spaces; the fields after it follow its ')'.
  const size_t close = line.rfind(')');
  if (close == std::string::npos) return false;
  std::istringstream fields(line.substr(close + 1));
  std::string state, skip;
  fields >> state;
  for (int i = 0; i < 10; ++i) fields >> skip;  // fields 4..13
  uint64_t utime = 0, stime = 0;
  if (!(fields >> utime >> stime)) return false;
  *ticks = utime + stime;
  *sleeping = state == "S";
  return true;
}

// Reads the child's report until it closes the pipe. With `rss_limit` (sanitizer
// builds, where RLIMIT_DATA cannot apply), checks the child's resident memory ten times
// a second and kills it past the limit, setting *over_limit. With `stuck_after_ms`,
// kills a child that has slept without using any CPU time for that long, setting
// *stuck: a child at work, however slow, uses CPU or waits on the disk ('D').
std::string ReadReport(int fd, pid_t pid, uint64_t rss_limit, bool* over_limit, int stuck_after_ms,
                       bool* stuck) {
  std::string out;
  char buf[4096];
  uint64_t last_ticks = 0;
  auto idle_since = std::chrono::steady_clock::now();
  for (;;) {
    struct pollfd p {};
    p.fd = fd;
    p.events = POLLIN;
    const int ready = ::poll(&p, 1, rss_limit || stuck_after_ms ? 100 : -1);
    if (ready < 0 && errno != EINTR) return out;
    if (ready <= 0) {
      if (stuck_after_ms && out.empty()) {
        uint64_t ticks = 0;
        bool sleeping = false;
        const auto now = std::chrono::steady_clock::now();
        if (!CpuTicksAndSleeping(pid, &ticks, &sleeping) || !sleeping || ticks != last_ticks) {
          last_ticks = ticks;
          idle_since = now;
        } else if (now - idle_since > std::chrono::milliseconds(stuck_after_ms)) {
          *stuck = true;
          ::kill(pid, SIGKILL);
          return out;
        }
      }
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

// Waits for the child; *peak_resident = its peak resident memory (ru_maxrss: what the
// kernel counts, mapped files included).
int WaitFor(pid_t pid, uint64_t* peak_resident) {
  int status = 0;
  struct rusage usage {};
  while (::wait4(pid, &status, 0, &usage) < 0 && errno == EINTR) {
  }
  *peak_resident = static_cast<uint64_t>(usage.ru_maxrss) << 10;  // kB on Linux
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

// What the child was doing, for an out-of-memory message: its activity, else the file
// it was reading.
std::string DoingWhat(const SharedNote* note) {
  const std::string activity = note->activity.Get();
  return activity.empty() ? ReadingWhat(note) : " while " + activity;
}

// A size to suggest for more memory: twice `limit`, rounded up ("4G", "80M").
std::string LargerLimit(uint64_t limit) {
  constexpr uint64_t kMiB = uint64_t{1} << 20, kGiB = uint64_t{1} << 30;
  const uint64_t wanted = 2 * limit;
  if (wanted >= kGiB) return std::to_string((wanted + kGiB - 1) / kGiB) + "G";
  return std::to_string((wanted + kMiB - 1) / kMiB) + "M";
}

// "--memory-limit SIZE (or CELLCUBE_MEMORY_LIMIT)", or the variable alone.
std::string Setting(const IsolationOptions& options) {
  return options.memory_limit_option.empty()
             ? std::string("CELLCUBE_MEMORY_LIMIT=SIZE")
             : options.memory_limit_option + " SIZE (or CELLCUBE_MEMORY_LIMIT)";
}

// The one line for a child that ran out of memory. `detail` is the work's own message,
// if it reported one beyond "out of memory".
Status OutOfMemory(const std::string& detail, const SharedNote* note, uint64_t used,
                   const IsolationOptions& options) {
  std::string line = "out of memory" + DoingWhat(note);
  if (!detail.empty()) line += ": " + detail;
  const uint64_t limit = options.memory_limit;
  if (limit == 0)
    return Status::OutOfMemory(line + " (used " + FormatBinaryBytes(used) +
                               "; no memory limit was set: the machine has no more)");
  const std::string example = options.memory_limit_option.empty()
                                  ? "CELLCUBE_MEMORY_LIMIT=" + LargerLimit(limit)
                                  : options.memory_limit_option + " " + LargerLimit(limit);
  return Status::OutOfMemory(line + " (used " + FormatBinaryBytes(used) + " of the " +
                             FormatBinaryBytes(limit) + " limit); " + Setting(options) +
                             " gives it more, e.g. " + example);
}

// What to say when an exception reached std::terminate in the child: a bug in cellcube.
std::string TerminateMessage(const SharedNote* note) {
  const std::string what = note->terminate_reason.Get();
  return (what.empty() ? std::string("internal error: std::terminate was called")
                       : "internal error: uncaught exception (" + what + ")") +
         DoingWhat(note) + "; please report this";
}

// What to say when the child died without reporting a Status, by a signal or an exit
// of its own (out of memory and std::terminate are handled before).
Status Death(int status, const SharedNote* note, uint64_t used, const IsolationOptions& options) {
  const std::string reading = ReadingWhat(note);
  if (WIFEXITED(status))
    return Status::Internal("stopped unexpectedly (exit code " +
                            std::to_string(WEXITSTATUS(status)) + ")" + reading);
  const int sig = WTERMSIG(status);
  if (sig == SIGKILL) {
    const std::string limit = options.memory_limit
                                  ? "; limit " + FormatBinaryBytes(options.memory_limit)
                                  : std::string("; no limit set");
    return Status::OutOfMemory("was killed (SIGKILL)" + DoingWhat(note) +
                               ", most likely by the kernel because the machine ran out of "
                               "memory (used " +
                               FormatBinaryBytes(used) + limit + "); " + Setting(options) +
                               " sets the limit");
  }
  if (sig == SIGINT || sig == SIGTERM || sig == SIGHUP || sig == SIGQUIT || sig == SIGPIPE)
    return Status::IoError("was stopped by " + SignalName(sig) + reading);
  if (reading.empty())
    return Status::Internal("crashed (" + SignalName(sig) + "); please report this");
  return Status::Corrupt("crashed (" + SignalName(sig) + ")" + reading + ": " +
                         (options.crash_advice.empty()
                              ? std::string("the file is most likely damaged")
                              : options.crash_advice));
}

}  // namespace

bool InIsolatedChild() { return g_note != nullptr; }

uint64_t MemoryLimitInForce() { return g_note ? g_limit_in_force : 0; }

void NoteReading(const std::string& path) {
  if (!g_note) return;
  std::lock_guard<std::mutex> lock(g_note_mutex);
  g_note->reading.Set(path);
}

void NoteActivity(const std::string& what) {
  if (!g_note) return;
  std::lock_guard<std::mutex> lock(g_note_mutex);
  g_note->activity.Set(what);
}

void NoteTemporaryFile(const std::string& path) {
  if (!g_note) return;
  std::lock_guard<std::mutex> lock(g_note_mutex);
  g_note->temporary.Set(path);
}

namespace {

// The parent's means of hearing from a child: a pipe for the Status it reports, and
// the shared page for what it notes (which outlives the child, whatever killed it).
struct ChildChannel {
  int read_fd = -1;
  int write_fd = -1;
  void* page = nullptr;
  SharedNote* note = nullptr;
};

Status OpenChannel(ChildChannel* out) {
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
  out->read_fd = fds[0];
  out->write_fd = fds[1];
  out->page = page;
  out->note = new (page) SharedNote();
  return Status::Ok();
}

// The caller's handlers of the forwarded signals while they go to the child instead
// (IsolationOptions::forward_signals). Restored by hand, not on destruction: the caller's
// handlers must be back before the child's death is acted on (even by raising its
// signal again).
class SignalForwarding {
 public:
  SignalForwarding(bool enabled, pid_t child) : enabled_(enabled) {
    if (!enabled_) return;
    g_received = 0;
    g_child_pid = child;
    struct sigaction forward {};
    forward.sa_handler = ForwardToChild;
    sigemptyset(&forward.sa_mask);
    forward.sa_flags = SA_RESTART;
    for (size_t i = 0; i < std::size(kForwarded); ++i)
      ::sigaction(kForwarded[i], &forward, &saved_[i]);
  }

  void Restore() {
    if (!enabled_) return;
    g_child_pid = 0;
    for (size_t i = 0; i < std::size(kForwarded); ++i)
      ::sigaction(kForwarded[i], &saved_[i], nullptr);
  }

 private:
  bool enabled_;
  struct sigaction saved_[std::size(kForwarded)];
};

// How a child ended, as the parent saw it.
struct ChildEnd {
  std::string wire;         // its report (Encode), if it sent a whole one
  int status = 0;           // from wait4
  uint64_t peak = 0;        // its peak resident memory
  bool over_limit = false;  // killed by the parent past the memory limit (sanitizer builds)
  bool stuck = false;       // killed stuck in the sanitizer's allocator
};

// Reads the child's report and reaps it. Only sanitizer builds watch the child: release
// builds have RLIMIT_DATA hold it, and their allocator cannot get stuck across fork.
ChildEnd AwaitChild(int read_fd, pid_t pid, const IsolationOptions& options) {
#ifdef CELLCUBE_ASAN
  const uint64_t rss_limit = options.memory_limit;
  const int stuck_after_ms = options.stuck_after_ms;
#else
  (void)options;
  const uint64_t rss_limit = 0;
  const int stuck_after_ms = 0;
#endif
  ChildEnd end;
  end.wire = ReadReport(read_fd, pid, rss_limit, &end.over_limit, stuck_after_ms, &end.stuck);
  ::close(read_fd);
  end.status = WaitFor(pid, &end.peak);
  return end;
}

// "used": the larger of the child's peak resident memory and its data segment (what
// RLIMIT_DATA counts) when an allocation failed, both beyond what it had at the fork.
uint64_t MemoryUsed(const SharedNote* note, uint64_t peak) {
  const uint64_t data = note->data_at_failure.load();
  return std::max(data > note->start_data ? data - note->start_data : 0,
                  peak > note->start_resident ? peak - note->start_resident : 0);
}

// The Status of a child that died without reporting one. May not return: a child
// stopped by the signal the caller was sent (or by a broken pipe) stops the caller the
// same way, silently.
Status Unreported(const ChildEnd& end, SharedNote* note, uint64_t used, bool out_of_memory,
                  const IsolationOptions& options) {
  // The child cannot clean up after itself any more: a partial file must not stay.
  if (const std::string temporary = note->temporary.Get(); !temporary.empty())
    ::unlink(temporary.c_str());
  const int sig = WIFSIGNALED(end.status) ? WTERMSIG(end.status) : 0;
  if (!out_of_memory && options.forward_signals && sig != 0 &&
      (sig == g_received || sig == SIGPIPE)) {
    ::munmap(note, sizeof(SharedNote));
    ::signal(sig, SIG_DFL);
    ::raise(sig);
  }
  if (out_of_memory) return OutOfMemory("", note, used, options);
  if (note->terminated.load() != 0) return Status::Internal(TerminateMessage(note));
  return Death(end.status, note, used, options);
}

// The child's Status, or why it has none; an out-of-memory Status of its own is
// reworded to say what it was doing, how much it used and what gives it more.
Status Outcome(const ChildEnd& end, SharedNote* note, const IsolationOptions& options) {
  const uint64_t used = MemoryUsed(note, end.peak);
  const bool out_of_memory = end.over_limit || note->out_of_memory.load() != 0;
  Status result;
  const bool reported = !end.over_limit && Decode(end.wire, &result);
  if (!reported) return Unreported(end, note, used, out_of_memory, options);
  if (result.code() != StatusCode::kOutOfMemory) return result;
  std::string detail = result.message();
  if (detail.rfind("out of memory", 0) == 0) detail = detail.substr(13);
  while (!detail.empty() && (detail[0] == ':' || detail[0] == ' ')) detail.erase(0, 1);
  return OutOfMemory(detail, note, used, options);
}

// RunIsolated, with `stuck_retries` more forks allowed for a child stuck in the
// sanitizer's allocator (IsolationOptions::stuck_after_ms).
Status RunIsolatedFork(const std::function<Status()>& work, const IsolationOptions& options,
                       int stuck_retries) {
  ChildChannel channel;
  CC_RETURN_IF_ERROR(OpenChannel(&channel));
  // Output buffered now would otherwise be written twice, by the child and by us.
  std::cout.flush();
  std::fflush(nullptr);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(channel.read_fd);
    RunChild(channel.write_fd, channel.note, parent, work, options);
  }
  ::close(channel.write_fd);
  if (pid < 0) {
    const int err = errno;
    ::close(channel.read_fd);
    ::munmap(channel.page, sizeof(SharedNote));
    return Status::IoError(std::string("cannot start a process: ") + std::strerror(err));
  }
  SignalForwarding forwarding(options.forward_signals, pid);
  const ChildEnd end = AwaitChild(channel.read_fd, pid, options);
  forwarding.Restore();
  if (end.stuck) {  // see IsolationOptions::stuck_after_ms: fork again
    ::munmap(channel.page, sizeof(SharedNote));
    if (stuck_retries == 0)
      return Status::Internal(
          "a sanitizer build's child process was stuck in its allocator 10 times in a row; "
          "try again");
    return RunIsolatedFork(work, options, stuck_retries - 1);
  }
  const Status result = Outcome(end, channel.note, options);
  ::munmap(channel.page, sizeof(SharedNote));
  return result;
}

}  // namespace

Status RunIsolated(const std::function<Status()>& work, const IsolationOptions& options) {
  return RunIsolatedFork(work, options, 10);
}

Result<uint64_t> ParseMemoryLimit(const std::string& given, const std::string& source) {
  const std::string text = ToLower(given);
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
  if (end == text.c_str() || errno != 0 || scale == 0 || !(bytes >= 1 << 20) || bytes > 1e18) {
    const bool option = !source.empty() && source[0] == '-';
    const std::string eg = option ? source + " " : source + "=";
    return Status::Usage((option ? "option '" + source + "' needs" : source + " must be") +
                         " a memory size of at least 1M, not '" + given + "' (e.g. " + eg +
                         "8G; also 512M, 1.5G, or off for no limit)");
  }
  return static_cast<uint64_t>(bytes);
}

Result<uint64_t> DefaultMemoryLimit() {
  if (const char* env = std::getenv("CELLCUBE_MEMORY_LIMIT"); env && *env)
    return ParseMemoryLimit(env, "CELLCUBE_MEMORY_LIMIT");
  return uint64_t{2} << 30;  // docs/SCALING.md: 2 GB by default
}

}  // namespace cellcube
