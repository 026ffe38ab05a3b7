#pragma once

// What the long-running `rondo` processes (combiner, controller) share:
// signal handling, the port file, the middleman settings and parsing
// `host:port`.

#include "security/certs.hpp"

#include <caf/error.hpp>
#include <caf/fwd.hpp>
#include <caf/timespan.hpp>

#include <signal.h>

#include <caf/expected.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace rondo::storage {
class model_store;
class state_store;
} // namespace rondo::storage

namespace rondo::apps {

/// Seconds as a CAF timespan.
caf::timespan seconds(double x);

/// Keeps freed memory in the process instead of handing it back to the
/// kernel at once: allocations up to 32 MiB come from malloc's heaps (not
/// one mmap each) and a heap keeps up to 128 MiB of free memory at its top.
/// glibc's defaults unmap and trim blocks of a few hundred KiB to a few MiB
/// (gRPC's read buffers, model chunks) as soon as they are freed, so every
/// chunk of a transfer page-faults its buffers in again; that cost the
/// combiner 2-3 CPU seconds per GB uploaded on a PVM guest. Peak RSS stays
/// bounded by what is live at once; malloc keeps two heaps (arenas) for all
/// threads. Call at start-up, before other threads. Never fails (a refused
/// setting keeps glibc's default).
void keep_freed_memory();

/// Makes CAF's scheduler sleep when it has nothing to do: the work-sharing
/// policy (one job queue; idle workers block on a condition variable) and
/// one worker per core. CAF's default work-stealing workers poll their
/// queues with short sleeps after every job (100 spins, then 500 sleeps of
/// 50 us, then 10 ms waits), which bench/combiner_load.py's perf profile
/// showed as 13-16 % of a combiner's CPU in rounds and most of its idle CPU
/// with 50 clients sending heartbeats. Call before making the actor system.
void quiet_scheduler(caf::actor_system_config& cfg);

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

/// @returns why the middleman options are invalid (heartbeat interval >
/// 0 s, connection timeout above it), or an empty string.
std::string check_middleman_options(double heartbeat_interval,
                                    double connection_timeout);

/// @returns why `level` is not an spdlog level name, or an empty string.
std::string check_log_level(const std::string& level);

/// Makes an stderr logger named `name` spdlog's default, at `level`.
void setup_logger(const std::string& name, const std::string& level);

/// The stores of one process's database directory.
struct process_stores {
  std::shared_ptr<storage::model_store> models;
  std::shared_ptr<storage::state_store> state;
};

/// Opens (creating if missing) the database at `dir` and its stores.
/// @returns ec::storage_error (or the store's error) naming `dir`.
caf::expected<process_stores> open_stores(const std::string& dir);

/// Checks, before anything is opened or created, that a server can listen
/// on host:port: binds a throw-away socket there (with SO_REUSEADDR, as the
/// servers do) and closes it. Port 0 always passes. A race with another
/// process is still caught when the server binds; this only makes the
/// common mistake (a second combiner or controller on the same port) fail
/// first, with a plain message.
/// @returns an empty string, or why it cannot listen there (e.g. "the port
///          is in use").
std::string check_port_free(const std::string& host, int port);

/// What answers at an endpoint, from the first bytes it sends on its own.
enum class endpoint_kind {
  /// Nothing accepted the connection (or the host does not resolve).
  unreachable,
  /// A CAF node (a Rondo controller): its handshake starts with four zero
  /// bytes (operation server_handshake, padding, flags).
  caf_node,
  /// An HTTP/2 server such as gRPC (a combiner's client port): it starts
  /// with a SETTINGS frame.
  http2,
  /// It accepted but sent neither within the timeout.
  silent,
};

/// Connects to `at` and reads what it sends first, bounded by `timeout_s`
/// seconds (connect and read).
endpoint_kind classify_endpoint(const endpoint& at, double timeout_s);

/// Checks that `at` speaks CAF's middleman protocol before the middleman
/// connects to it: CAF 0.17 crashes (SIGSEGV in its BASP parser) when the
/// peer is something else, e.g. a combiner's gRPC port given as the
/// controller (classify_endpoint).
///
/// Without `tls` (none of its files set) the peer must talk first, as a
/// plaintext CAF node does. With `tls` (all three files, checked) the peer
/// must stay silent for up to half a second (a TLS server waits for the
/// client's hello; a plaintext controller would read our hello as a BASP
/// header), then complete a mutual-TLS handshake with these files
/// (security::probe_tls): so a controller whose certificate does not verify
/// against --ca, or that rejects ours, is reported here, at once, with
/// OpenSSL's reason.
/// @returns an empty string when it is a CAF node (over TLS with `tls`) or
///          nothing accepts connections there (the caller's connect reports
///          that), else why it is not a Rondo controller this process can
///          use. Bounded by `timeout_s` seconds (each of connect, wait,
///          handshake).
std::string probe_caf_endpoint(const endpoint& at, double timeout_s,
                               const security::tls_files& tls = {});

/// Sends each valid actor in `actors` an exit (user_shutdown) and waits
/// until all are down, at most 10 s in all; logs a warning naming `what`
/// when they did not stop in time. An actor still alive when the actor
/// system is destroyed can crash it (CAF 0.17).
void stop_and_wait(caf::actor_system& sys,
                   const std::vector<caf::actor>& actors,
                   const std::string& what);

/// Loads the middleman into `cfg` and turns its heartbeat on, so a frozen
/// peer is noticed after `connection_timeout` (seconds; the heartbeat runs
/// every `heartbeat_interval` seconds). See TOOLCHAIN_NOTES: without a
/// heartbeat a frozen peer is never seen.
///
/// With `tls` (cert, key and CA; check them first with
/// security::check_tls_files(tls, true): CAF throws from its I/O loop on a
/// bad file) it also loads CAF's OpenSSL module with them: connections
/// made through `sys.openssl_manager()` (caf::openssl::publish,
/// remote_actor, its actor_handle()) then require mutual TLS: each side's
/// certificate must verify against the CA (no host name check). CAF loads
/// the three files again for every connection and aborts the process when
/// one fails to load, so CAF is given in-memory copies made here (memfd):
/// replacing or removing the files later changes nothing until a restart.
void enable_middleman(caf::actor_system_config& cfg,
                      double heartbeat_interval, double connection_timeout,
                      const security::tls_files& tls = {});

/// The operator's and the combiner's TLS flags to the controller:
/// @returns why `tls` cannot be used for the middleman (some but not all of
///          --cert/--key/--ca, or a bad file; see
///          security::check_tls_files), or an empty string (also when none
///          is given: plaintext).
std::string check_middleman_tls(const security::tls_files& tls);

} // namespace rondo::apps
