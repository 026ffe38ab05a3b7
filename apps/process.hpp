#pragma once

// What the long-running `rondo` processes (combiner, controller) share:
// signal handling, the port file, the middleman settings and parsing
// `host:port`.

#include <caf/error.hpp>
#include <caf/fwd.hpp>
#include <caf/timespan.hpp>

#include <signal.h>

#include <cstdint>
#include <string>

namespace rondo::apps {

/// Seconds as a CAF timespan.
caf::timespan seconds(double x);

/// Blocks SIGINT and SIGTERM in the calling thread. Call before any thread
/// starts (CAF's, gRPC's) so that they all inherit the mask and only
/// `wait_for_stop_signal` takes the signal. @returns the blocked set.
sigset_t block_stop_signals();

/// Waits for SIGINT or SIGTERM, logs it, and arms a second wait that exits
/// the process at once (status 130) on another signal during shutdown.
void wait_for_stop_signal(sigset_t signals);

/// Writes `port` to `path` atomically (a temporary file renamed over it),
/// so a script waiting for the file never reads a partial number.
/// @returns ec::storage_error naming the file on failure.
caf::error write_port_file(const std::string& path, uint16_t port);

/// A controller's address as given on the command line.
struct endpoint {
  std::string host;
  uint16_t port = 0;
};

/// Parses "host:port" (port 1..65535; host non-empty). @returns the
/// endpoint, or an empty host and `problem` set to why it is invalid.
endpoint parse_endpoint(const std::string& text, std::string& problem);

/// Loads the middleman into `cfg` and turns its heartbeat on, so a frozen
/// peer is noticed after `connection_timeout` (seconds; the heartbeat runs
/// every `heartbeat_interval` seconds). See TOOLCHAIN_NOTES: without a
/// heartbeat a frozen peer is never seen.
void enable_middleman(caf::actor_system_config& cfg,
                      double heartbeat_interval, double connection_timeout);

} // namespace rondo::apps
