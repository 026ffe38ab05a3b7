#include "client/runner.hpp"

#include "client/stop_source.hpp"
#include "messages/error.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

extern char** environ;

namespace rondo::client {

namespace {

using clock_type = std::chrono::steady_clock;

std::string errno_text(int err) {
  return std::strerror(err);
}

// Closes a file descriptor on scope exit.
struct fd_guard {
  int fd;
  ~fd_guard() {
    if (fd >= 0)
      ::close(fd);
  }
};

// posix_spawn attribute and file-action objects, destroyed on scope exit.
struct spawn_setup {
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  spawn_setup() {
    posix_spawn_file_actions_init(&actions);
    posix_spawnattr_init(&attr);
  }
  ~spawn_setup() {
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
  }
  spawn_setup(const spawn_setup&) = delete;
  spawn_setup& operator=(const spawn_setup&) = delete;
};

// Shared between the caller and the waiter thread.
struct wait_state {
  std::mutex mtx;
  std::condition_variable cv;
  bool exited = false;
  bool cancelled = false;
};

// The last `n` bytes of the file behind `fd` (made valid UTF-8). When cut,
// starts at the next line break if there is one early in the tail, and is
// prefixed with "...".
std::string read_tail(int fd, size_t n) {
  struct stat st;
  if (::fstat(fd, &st) != 0 || st.st_size <= 0 || n == 0)
    return {};
  auto size = static_cast<size_t>(st.st_size);
  auto len = std::min(size, n);
  std::string buf(len, '\0');
  size_t got = 0;
  while (got < len) {
    auto r = ::pread(fd, buf.data() + got, len - got,
                     static_cast<off_t>(size - len + got));
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      break;
    got += static_cast<size_t>(r);
  }
  buf.resize(got);
  if (len < size) {
    auto nl = buf.find('\n');
    if (nl != std::string::npos && nl < 256)
      buf.erase(0, nl + 1);
    buf.insert(0, "...");
  }
  return to_valid_utf8(buf);
}

std::chrono::nanoseconds seconds_to_duration(double s) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
    std::chrono::duration<double>(s));
}

std::string format_seconds(double s) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%g", s);
  return buf;
}

} // namespace

std::string run_result::describe() const {
  switch (end) {
    case end_kind::exited:
      return "exited with status " + std::to_string(exit_status);
    case end_kind::signaled:
      return "killed by signal " + std::to_string(signal) + " (" +
             ::strsignal(signal) + ")";
    case end_kind::timed_out:
      return "timed out after " + format_seconds(wall_seconds) +
             " s (process group killed)";
    case end_kind::cancelled:
      return "cancelled (stop requested; process group killed)";
  }
  return "unknown end";
}

std::string shell_quote(const std::string& arg) {
  std::string out = "'";
  for (char c : arg) {
    if (c == '\'')
      out += "'\\''";
    else
      out += c;
  }
  out += '\'';
  return out;
}

std::string command_line(const std::string& command,
                         const std::vector<std::string>& args) {
  std::string line = command;
  for (const auto& a : args) {
    line += ' ';
    line += shell_quote(a);
  }
  return line;
}

std::string to_valid_utf8(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  auto byte = [&](size_t i) { return static_cast<unsigned char>(text[i]); };
  size_t i = 0;
  while (i < text.size()) {
    auto c = byte(i);
    size_t len = 0;
    unsigned char lo = 0x80, hi = 0xBF; // bounds of the second byte
    if (c < 0x80) {
      len = 1;
    } else if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0)
        lo = 0xA0;
      else if (c == 0xED)
        hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0)
        lo = 0x90;
      else if (c == 0xF4)
        hi = 0x8F;
    }
    bool valid = len > 0 && i + len <= text.size();
    for (size_t k = 1; valid && k < len; ++k) {
      auto b = byte(i + k);
      if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF))
        valid = false;
    }
    if (valid) {
      out.append(text, i, len);
      i += len;
    } else {
      out += '?';
      ++i;
    }
  }
  return out;
}

caf::expected<run_result> run_command(const std::string& command,
                                      const std::vector<std::string>& args,
                                      const run_options& opts) {
  auto line = command_line(command, args);
  // Capture stderr in an unlinked temporary file (no size limit in memory).
  std::error_code fs_err;
  auto tmp = std::filesystem::temp_directory_path(fs_err);
  if (fs_err)
    tmp = "/tmp";
  std::string tmpl = (tmp / "rondo-stderr-XXXXXX").string();
  int err_fd = ::mkostemp(tmpl.data(), O_CLOEXEC);
  if (err_fd < 0)
    return caf::make_error(ec::unspecified,
                           "cannot create a stderr capture file in " +
                             tmp.string() + ": " + errno_text(errno));
  fd_guard err_guard{err_fd};
  ::unlink(tmpl.c_str());
  // Spawn /bin/sh -c LINE as the leader of its own process group.
  pid_t pid = -1;
  {
    spawn_setup s;
    posix_spawn_file_actions_addopen(&s.actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&s.actions, err_fd, 2);
    if (!opts.cwd.empty())
      posix_spawn_file_actions_addchdir_np(&s.actions, opts.cwd.c_str());
    posix_spawnattr_setflags(&s.attr, POSIX_SPAWN_SETPGROUP |
                                        POSIX_SPAWN_SETSIGMASK |
                                        POSIX_SPAWN_SETSIGDEF);
    posix_spawnattr_setpgroup(&s.attr, 0);
    sigset_t none;
    sigemptyset(&none);
    posix_spawnattr_setsigmask(&s.attr, &none);
    // Signals the client may ignore or handle (gRPC ignores SIGPIPE) go back
    // to their defaults in the command.
    sigset_t defaults;
    sigemptyset(&defaults);
    for (int sig : {SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGCHLD,
                    SIGUSR1, SIGUSR2})
      sigaddset(&defaults, sig);
    posix_spawnattr_setsigdefault(&s.attr, &defaults);
    std::string sh = "sh";
    std::string dash_c = "-c";
    char* argv[] = {sh.data(), dash_c.data(), line.data(), nullptr};
    int rc = ::posix_spawn(&pid, "/bin/sh", &s.actions, &s.attr, argv,
                           environ);
    if (rc != 0) {
      auto where = opts.cwd.empty() ? std::string{}
                                    : " in '" + opts.cwd.string() + "'";
      return caf::make_error(ec::unspecified, "cannot start '" + command +
                                                "'" + where + ": " +
                                                errno_text(rc));
    }
  }
  auto start = clock_type::now();
  auto state = std::make_shared<wait_state>();
  // The waiter blocks until the shell exits but does not reap it
  // (WNOWAIT): while it is an unreaped zombie its pid, which is also the
  // group id, cannot be reused, so killpg() below cannot hit a stranger.
  std::thread waiter{[pid, state] {
    siginfo_t info;
    while (::waitid(P_PID, static_cast<id_t>(pid), &info,
                    WEXITED | WNOWAIT) != 0
           && errno == EINTR) {
    }
    {
      std::lock_guard<std::mutex> guard{state->mtx};
      state->exited = true;
    }
    state->cv.notify_all();
  }};
  std::optional<stop_callback> on_stop;
  if (opts.stop != nullptr)
    on_stop.emplace(*opts.stop, [state] {
      {
        std::lock_guard<std::mutex> guard{state->mtx};
        state->cancelled = true;
      }
      state->cv.notify_all();
    });
  run_result result;
  {
    std::unique_lock<std::mutex> lock{state->mtx};
    auto done = [&] { return state->exited || state->cancelled; };
    if (opts.timeout_s > 0)
      state->cv.wait_until(lock, start + seconds_to_duration(opts.timeout_s),
                           done);
    else
      state->cv.wait(lock, done);
    if (!state->exited) {
      result.end = state->cancelled ? run_result::end_kind::cancelled
                                    : run_result::end_kind::timed_out;
      lock.unlock();
      ::killpg(pid, SIGTERM);
      lock.lock();
      state->cv.wait_for(lock, seconds_to_duration(opts.kill_grace_s),
                         [&] { return state->exited; });
      lock.unlock();
      // Also ends stragglers of the group that survived SIGTERM.
      ::killpg(pid, SIGKILL);
    }
  }
  waiter.join();
  on_stop.reset();
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  result.wall_seconds =
    std::chrono::duration<double>(clock_type::now() - start).count();
  if (WIFEXITED(status)) {
    result.exit_status = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    result.signal = WTERMSIG(status);
    if (result.end == run_result::end_kind::exited)
      result.end = run_result::end_kind::signaled;
  }
  result.stderr_tail = read_tail(err_fd, opts.stderr_tail_bytes);
  return result;
}

caf::expected<double> run_entry_point(const compute_package& pkg,
                                      const std::string& name,
                                      const std::vector<std::string>& args,
                                      run_options opts) {
  auto* ep = pkg.find(name);
  if (ep == nullptr)
    return caf::make_error(ec::invalid_config,
                           "fedn.yaml has no '" + name + "' entry point");
  opts.cwd = pkg.dir;
  auto res = run_command(ep->command, args, opts);
  if (!res)
    return res.error();
  if (res->ok())
    return res->wall_seconds;
  auto text = name + " failed: " + res->describe();
  if (!res->stderr_tail.empty())
    text += "; stderr tail:\n" + res->stderr_tail;
  auto code = ec::unspecified;
  if (res->end == run_result::end_kind::timed_out)
    code = ec::timeout;
  else if (res->end == run_result::end_kind::cancelled)
    code = ec::terminated;
  return caf::make_error(code, std::move(text));
}

} // namespace rondo::client
