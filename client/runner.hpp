#pragma once

// Runs one compute-package entry point: `<command> <args...>` through
// `/bin/sh -c` in the package folder, with a wall-clock timeout, capturing
// the tail of its stderr.

#include "client/compute_package.hpp"

#include <caf/expected.hpp>

#include <cstddef>
#include <filesystem>
#include <string>
#include <vector>

namespace rondo::client {

class stop_source;

/// How `run_command` runs a command.
struct run_options {
  /// Working directory of the command (the package folder). Empty: the
  /// caller's working directory.
  std::filesystem::path cwd;
  /// Wall-clock limit in seconds; <= 0 means no limit. On expiry the
  /// command's process group gets SIGTERM, then SIGKILL after
  /// `kill_grace_s`.
  double timeout_s = 3600;
  /// Seconds between SIGTERM and SIGKILL when a command is stopped.
  double kill_grace_s = 5;
  /// How many trailing bytes of stderr `run_result::stderr_tail` keeps.
  size_t stderr_tail_bytes = 4096;
  /// Optional: requesting stop on this source stops the command like a
  /// timeout (reported as `cancelled`). Must outlive the call.
  stop_source* stop = nullptr;
};

/// What became of a command that was started.
struct run_result {
  /// How the command ended.
  enum class end_kind {
    /// The shell exited on its own; see `exit_status`.
    exited,
    /// The shell was killed by a signal it did not get from us.
    signaled,
    /// It ran past `timeout_s` and its process group was killed.
    timed_out,
    /// Stop was requested (see `run_options::stop`); its group was killed.
    cancelled,
  };

  end_kind end = end_kind::exited;
  /// Exit status of `/bin/sh` when it exited (127: command not found), else
  /// -1.
  int exit_status = -1;
  /// The terminating signal when killed, else 0.
  int signal = 0;
  /// Wall-clock run time in seconds.
  double wall_seconds = 0;
  /// The last `stderr_tail_bytes` of the command's stderr, as valid UTF-8
  /// (bytes that are not are replaced by '?'); starts with "..." when cut.
  std::string stderr_tail;

  /// True if the command exited with status 0.
  bool ok() const {
    return end == end_kind::exited && exit_status == 0;
  }

  /// One line for logs and status messages, e.g. "exited with status 2",
  /// "timed out after 1 s", "killed by signal 9".
  std::string describe() const;
};

/// Quotes `arg` for /bin/sh (single quotes; embedded quotes escaped).
std::string shell_quote(const std::string& arg);

/// `command` followed by each of `args` shell-quoted, space-separated.
std::string command_line(const std::string& command,
                         const std::vector<std::string>& args);

/// Runs `command_line(command, args)` via `/bin/sh -c` in `opts.cwd`, as
/// the leader of a new process group, with stdin from /dev/null, stdout
/// inherited, stderr captured to an unlinked temporary file, the caller's
/// environment, and default signal dispositions and an empty signal mask.
/// Blocks until the command ends or is stopped (timeout or
/// `opts.stop`); never polls: a waiter thread blocks in waitid() while the
/// caller waits on a condition variable with a deadline.
/// A command that fails, times out or is killed is a `run_result` (check
/// `ok()`); the error is for a command that could not be started (capture
/// file not creatable, `cwd` missing, spawn failure).
caf::expected<run_result> run_command(const std::string& command,
                                      const std::vector<std::string>& args,
                                      const run_options& opts);

/// Runs entry point `name` of `pkg` with `args` (see `run_command`; the
/// working directory is always `pkg.dir`). Returns the wall-clock seconds
/// on success. Errors: `ec::invalid_config` if fedn.yaml has no such entry
/// point; `ec::timeout` if it timed out; `ec::terminated` if stop was
/// requested; `ec::unspecified` if it failed, with text "<name> failed:
/// <how>" and, when it wrote to stderr, "; stderr tail:\n<tail>"; the
/// errors of `run_command` if it could not be started.
caf::expected<double> run_entry_point(const compute_package& pkg,
                                      const std::string& name,
                                      const std::vector<std::string>& args,
                                      run_options opts);

/// Returns `text` with every byte that is not part of a valid UTF-8
/// sequence replaced by '?' (proto3 string fields must be valid UTF-8).
std::string to_valid_utf8(const std::string& text);

} // namespace rondo::client
