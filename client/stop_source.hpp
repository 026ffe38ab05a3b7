#pragma once

// A one-shot stop request shared by the client's threads: the signal
// thread requests it, waits (back-off, heartbeat interval) end at once, and
// registered callbacks cancel blocking work (gRPC calls, a running entry
// point). C++17 stand-in for std::stop_source + std::stop_callback.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>

namespace rondo::client {

/// A thread-safe, one-shot stop flag with interruptible waits and stop
/// callbacks. Stopping cannot be undone.
class stop_source {
public:
  /// Identifies a registered callback (see `add_callback`).
  using callback_id = uint64_t;

  stop_source() = default;
  stop_source(const stop_source&) = delete;
  stop_source& operator=(const stop_source&) = delete;

  /// Requests stop: wakes every `wait_for` and runs every registered
  /// callback once (on the calling thread, outside the lock). Idempotent;
  /// returns true only for the call that actually stopped.
  bool request_stop();

  /// True once `request_stop` was called.
  bool stop_requested() const;

  /// Blocks for up to `timeout` or until stop is requested, whichever comes
  /// first. Returns true if stop was requested.
  bool wait_for(std::chrono::steady_clock::duration timeout) const;

  /// Registers `fn` to run when stop is requested. If stop was already
  /// requested, runs `fn` now (on this thread) and returns 0. `fn` must not
  /// call `add_callback`/`remove_callback` itself.
  callback_id add_callback(std::function<void()> fn);

  /// Unregisters a callback. Returns after the callback has finished if it
  /// is running on another thread, so its captures may be destroyed
  /// afterwards. Id 0 is ignored.
  void remove_callback(callback_id id);

private:
  mutable std::mutex mtx_;
  mutable std::condition_variable cv_;
  bool stopped_ = false;
  bool running_callbacks_ = false;
  std::condition_variable callbacks_done_;
  callback_id next_id_ = 1;
  std::map<callback_id, std::function<void()>> callbacks_;
};

/// RAII registration of a stop callback; unregisters on destruction.
class stop_callback {
public:
  /// Registers `fn` with `src` (runs it now if `src` already stopped).
  stop_callback(stop_source& src, std::function<void()> fn)
    : src_(src), id_(src.add_callback(std::move(fn))) {
  }
  ~stop_callback() {
    src_.remove_callback(id_);
  }
  stop_callback(const stop_callback&) = delete;
  stop_callback& operator=(const stop_callback&) = delete;

private:
  stop_source& src_;
  stop_source::callback_id id_;
};

} // namespace rondo::client
