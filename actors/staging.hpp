#pragma once

// Model staging: makes a model available to a round. A request is served
// from an LRU memory cache, else from the local model store, else from a
// remote model source (e.g. the controller), with a bounded number of tries
// and back-off between them as self-addressed timers. Concurrent requests
// for one model share one fetch; bytes are shared, never copied per
// requester.

#include "actors/type_ids.hpp"
#include "messages/combiner_messages.hpp"

#include <caf/error.hpp>
#include <caf/fwd.hpp>
#include <caf/timespan.hpp>
#include <caf/typed_response_promise.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace rondo {

namespace storage {
class model_store;
} // namespace storage

/// Options of the staging actor.
struct staging_config {
  /// Tries per fetch before every waiting request fails (>= 1). A try reads
  /// the model store and, if the model is not there and a source exists,
  /// asks the source. Default: 3.
  size_t max_tries = 3;
  /// Delay between the first failed try and the next one (>= 0).
  /// Default: 1 s.
  caf::timespan retry_delay = std::chrono::seconds{1};
  /// Multiplier applied to the delay after each further failed try (>= 1):
  /// the n-th retry waits `retry_delay * backoff^(n-1)`. Default: 1 (fixed
  /// delay).
  double backoff = 1.0;
  /// Budget of the LRU memory cache in bytes; least recently used models
  /// are evicted to stay within it. A model larger than the budget is
  /// served but not cached; 0 disables the cache. Default: 8 MiB (a
  /// FEDn-sized model or two). A round needs its global model once, at its
  /// start (the edge serves downloads itself; models fetched from a source
  /// are in the local store afterwards), and with the former 1 GiB every
  /// round's model stayed in memory until 1 GiB of them had accumulated
  /// (bench/combiner_load.py: +4 MiB of RSS per round of a 4 MB model).
  uint64_t cache_bytes = uint64_t{8} << 20;
  /// Timeout of each request to the model source (> 0); a timed-out request
  /// counts as a failed try. Default: 60 s.
  caf::timespan source_timeout = std::chrono::seconds{60};
};

/// Checks a staging configuration.
/// @returns `ec::invalid_config` naming the option and its value, or none.
caf::error validate(const staging_config& cfg);

/// State of the staging actor: the memory cache and the fetches in flight.
/// The cache methods and `retry_delay_after` need no actor system; the
/// fetch methods drive `self`.
struct staging_state {
  static inline constexpr const char* name = "model-staging";

  using promise_type = caf::typed_response_promise<model_blob>;

  /// One fetch of one model, shared by every request that arrives while it
  /// runs.
  struct fetch {
    /// Requests waiting for the model.
    std::vector<promise_type> waiters;
    /// Failed tries so far.
    size_t failed_tries = 0;
    /// Tags this fetch's retry timer and source replies; stale ones (from an
    /// earlier fetch of the same model) are ignored.
    uint64_t epoch = 0;
    /// Whether a source request is outstanding (else a retry timer is
    /// pending, or the fetch is about to end).
    bool awaiting_source = false;
    /// Why the last try failed.
    caf::error last_error;
  };

  staging_state() = default;
  staging_state(const staging_state&) = delete;
  staging_state& operator=(const staging_state&) = delete;

  /// Fails every waiting request with `ec::terminated`.
  ~staging_state();

  // -- memory cache -----------------------------------------------------------

  /// The cached bytes of `model_id` (marked as most recently used), or null.
  std::shared_ptr<const std::string> cache_find(const std::string& model_id);

  /// Caches `bytes` under `model_id` as most recently used, evicting least
  /// recently used models until the cache fits `cfg.cache_bytes`. A model
  /// larger than the budget is not cached. @returns whether it was cached.
  bool cache_insert(const std::string& model_id,
                    std::shared_ptr<const std::string> bytes);

  /// Drops every cached model but `model_id` (the global model the
  /// controller just committed; the others are no longer needed).
  /// @returns the number of models dropped.
  size_t cache_keep_only(const std::string& model_id);

  /// Bytes held by the cache.
  uint64_t cached_bytes() const {
    return cached_bytes_;
  }

  /// Number of cached models.
  size_t cached_models() const {
    return lru_.size();
  }

  /// Cached model ids, most recently used first.
  std::vector<std::string> cached_ids() const;

  // -- fetches ----------------------------------------------------------------

  /// Delay before the next try after `failed_tries` (>= 1) failed tries:
  /// `cfg.retry_delay * cfg.backoff^(failed_tries - 1)`, saturating.
  caf::timespan retry_delay_after(size_t failed_tries) const;

  /// Serves one request for a valid `model_id`: from the cache, else by
  /// joining the fetch in flight, else by starting a fetch (its first try
  /// runs now). The reply goes to `rp`.
  void serve(const std::string& model_id, promise_type rp);

  /// Runs one try of the fetch of `model_id`: reads the store; on
  /// `ec::not_found` asks the source if there is one.
  void attempt(const std::string& model_id);

  /// Handles a retry timer (`what` = "retry:<model id>"); ignores stale ones.
  void on_timer(const timer_tick& tick);

  /// Ends the fetch of `model_id` successfully: caches the bytes and replies
  /// to every waiter.
  void succeed(const std::string& model_id,
               std::shared_ptr<const std::string> bytes);

  /// Records a failed try of the fetch of `model_id`: schedules the next
  /// try, or after `cfg.max_tries` fails every waiter with
  /// `ec::staging_failed`.
  void fail_try(const std::string& model_id, caf::error err);

  /// Number of fetches in flight.
  size_t fetches_in_flight() const {
    return fetches_.size();
  }

  // -- member variables -------------------------------------------------------

  /// The actor; null when the state is used without one (cache only).
  staging_actor::stateful_pointer<staging_state> self = nullptr;
  std::shared_ptr<storage::model_store> store;
  /// May be invalid: then a model missing from the store cannot be staged.
  model_source_actor source;
  staging_config cfg;
  /// The last failure to write a model fetched from the source to the store
  /// (the model was served anyway); none if every write succeeded.
  caf::error last_store_write_error;

private:
  struct cache_entry {
    std::string model_id;
    std::shared_ptr<const std::string> bytes;
  };

  std::string render_(const caf::error& err) const;

  /// Most recently used first.
  std::list<cache_entry> lru_;
  std::unordered_map<std::string, std::list<cache_entry>::iterator> index_;
  uint64_t cached_bytes_ = 0;
  std::unordered_map<std::string, fetch> fetches_;
  uint64_t next_epoch_ = 0;
};

/// The staging actor.
/// - (committed, model_id): the cache drops every model but model_id.
/// - (get, model_id) -> model_blob: the model's bytes. Fails with
///   `ec::invalid_argument` at once for a malformed id, with
///   `ec::staging_failed` ("staging model <id> failed after <n> tries:
///   <last error>") after `cfg.max_tries` failed tries, with
///   `ec::terminated` if the actor stops first.
/// A model fetched from the source is written to `store` (best effort: a
/// failed write does not fail the request) and cached. The actor blocks only
/// on local store reads and writes; every other wait is bounded by
/// `cfg.source_timeout` and the retry timers.
/// @param store the local model store (not null).
/// @param source the remote source, or an invalid handle for none.
/// @param cfg options; an invalid configuration stops the actor at once
///        with `ec::invalid_config`.
staging_actor::behavior_type
staging(staging_actor::stateful_pointer<staging_state> self,
        std::shared_ptr<storage::model_store> store, model_source_actor source,
        staging_config cfg);

} // namespace rondo
