#include "actors/staging.hpp"

#include "api/metrics.hpp"
#include "messages/error.hpp"
#include "storage/model_store.hpp"

#include <caf/actor_system.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

#include <cassert>
#include <cmath>
#include <limits>
#include <utility>

namespace rondo {

namespace {


} // namespace

caf::error validate(const staging_config& cfg) {
  if (cfg.max_tries < 1)
    return caf::make_error(ec::invalid_config,
                           "staging max_tries must be >= 1, got 0");
  if (cfg.retry_delay.count() < 0)
    return caf::make_error(ec::invalid_config,
                           "staging retry_delay must be >= 0, got "
                             + std::to_string(cfg.retry_delay.count())
                             + " ns");
  if (!(cfg.backoff >= 1.0) || !std::isfinite(cfg.backoff))
    return caf::make_error(ec::invalid_config,
                           "staging backoff must be a finite number >= 1, got "
                             + std::to_string(cfg.backoff));
  if (cfg.source_timeout.count() <= 0)
    return caf::make_error(ec::invalid_config,
                           "staging source_timeout must be > 0, got "
                             + std::to_string(cfg.source_timeout.count())
                             + " ns");
  return caf::none;
}

// -- staging_state: memory cache ----------------------------------------------

staging_state::~staging_state() {
  for (auto& [id, f] : fetches_)
    for (auto& rp : f.waiters)
      rp.deliver(caf::make_error(ec::terminated, "model staging stopped "
                                                 "while staging model "
                                                   + id));
}

std::shared_ptr<const std::string>
staging_state::cache_find(const std::string& model_id) {
  auto i = index_.find(model_id);
  if (i == index_.end())
    return nullptr;
  lru_.splice(lru_.begin(), lru_, i->second);
  return i->second->bytes;
}

bool staging_state::cache_insert(const std::string& model_id,
                                 std::shared_ptr<const std::string> bytes) {
  assert(bytes != nullptr);
  if (auto i = index_.find(model_id); i != index_.end()) {
    cached_bytes_ -= i->second->bytes->size();
    lru_.erase(i->second);
    index_.erase(i);
  }
  uint64_t size = bytes->size();
  if (size > cfg.cache_bytes)
    return false;
  while (!lru_.empty() && cached_bytes_ + size > cfg.cache_bytes) {
    auto& victim = lru_.back();
    cached_bytes_ -= victim.bytes->size();
    index_.erase(victim.model_id);
    lru_.pop_back();
  }
  lru_.push_front(cache_entry{model_id, std::move(bytes)});
  index_.emplace(model_id, lru_.begin());
  cached_bytes_ += size;
  return true;
}

std::vector<std::string> staging_state::cached_ids() const {
  std::vector<std::string> out;
  out.reserve(lru_.size());
  for (auto& e : lru_)
    out.push_back(e.model_id);
  return out;
}

// -- staging_state: fetches ---------------------------------------------------

caf::timespan staging_state::retry_delay_after(size_t failed_tries) const {
  auto exponent = failed_tries > 0 ? failed_tries - 1 : 0;
  auto ns = static_cast<double>(cfg.retry_delay.count())
            * std::pow(cfg.backoff, static_cast<double>(exponent));
  constexpr auto max_ns = static_cast<double>(
    std::numeric_limits<caf::timespan::rep>::max() / 2);
  if (!(ns < max_ns))
    return caf::timespan{static_cast<caf::timespan::rep>(max_ns)};
  return caf::timespan{static_cast<caf::timespan::rep>(ns)};
}

void staging_state::serve(const std::string& model_id, promise_type rp) {
  if (auto bytes = cache_find(model_id)) {
    rp.deliver(model_blob{model_id, std::move(bytes)});
    return;
  }
  if (auto i = fetches_.find(model_id); i != fetches_.end()) {
    i->second.waiters.push_back(std::move(rp));
    return;
  }
  auto& f = fetches_[model_id];
  f.epoch = ++next_epoch_;
  f.waiters.push_back(std::move(rp));
  attempt(model_id);
}

void staging_state::attempt(const std::string& model_id) {
  auto i = fetches_.find(model_id);
  assert(i != fetches_.end());
  auto got = store->get(model_id);
  if (got) {
    succeed(model_id, std::make_shared<const std::string>(std::move(*got)));
    return;
  }
  if (got.error() != ec::not_found || !source) {
    fail_try(model_id, std::move(got.error()));
    return;
  }
  i->second.awaiting_source = true;
  auto epoch = i->second.epoch;
  // A stale reply cannot reach a newer fetch of the same model: a fetch ends
  // only after its outstanding request answered or timed out. The epoch
  // check guards that invariant anyway.
  auto is_current = [this, model_id, epoch] {
    auto j = fetches_.find(model_id);
    return j != fetches_.end() && j->second.epoch == epoch
           && j->second.awaiting_source;
  };
  self
    ->request(source, cfg.source_timeout, caf::get_atom::value, model_id)
    .then(
      [this, model_id, is_current](model_blob& blob) {
        if (!is_current())
          return;
        fetches_[model_id].awaiting_source = false;
        if (!blob.bytes) {
          fail_try(model_id,
                   caf::make_error(ec::unspecified, "the model source sent no "
                                                    "bytes for model "
                                                      + model_id));
          return;
        }
        if (blob.model_id != model_id) {
          fail_try(model_id,
                   caf::make_error(ec::unspecified,
                                   "the model source sent model "
                                     + blob.model_id + " for model "
                                     + model_id));
          return;
        }
        auto bytes = std::move(blob.bytes);
        succeed(model_id, bytes);
        // Written after the replies went out, so that requesters do not
        // wait for the (synced) write. Best effort: the model is served
        // either way, and a later fetch asks the source again.
        if (auto res = store->put(model_id, *bytes);
            !res && res.error() != ec::already_exists)
          last_store_write_error = res.error();
      },
      [this, model_id, is_current](caf::error& err) {
        if (!is_current())
          return;
        fetches_[model_id].awaiting_source = false;
        fail_try(model_id, std::move(err));
      });
}

void staging_state::on_timer(const timer_tick& tick) {
  if (tick.kind != timer_kind::staging_retry)
    return;
  auto& model_id = tick.subject;
  auto i = fetches_.find(model_id);
  if (i == fetches_.end() || i->second.epoch != tick.epoch
      || i->second.awaiting_source)
    return;
  attempt(model_id);
}

void staging_state::succeed(const std::string& model_id,
                            std::shared_ptr<const std::string> bytes) {
  auto i = fetches_.find(model_id);
  assert(i != fetches_.end());
  auto waiters = std::move(i->second.waiters);
  fetches_.erase(i);
  cache_insert(model_id, bytes);
  for (auto& rp : waiters)
    rp.deliver(model_blob{model_id, bytes});
}

void staging_state::fail_try(const std::string& model_id, caf::error err) {
  auto i = fetches_.find(model_id);
  assert(i != fetches_.end());
  auto& f = i->second;
  f.failed_tries += 1;
  f.last_error = std::move(err);
  if (f.failed_tries < cfg.max_tries) {
    metrics::count_staging_retry();
    self->delayed_send(self, retry_delay_after(f.failed_tries),
                       timer_tick{timer_kind::staging_retry, f.epoch, model_id});
    return;
  }
  auto reason = "staging model " + model_id + " failed after "
                + std::to_string(f.failed_tries)
                + (f.failed_tries == 1 ? " try: " : " tries: ")
                + render_(f.last_error);
  auto waiters = std::move(f.waiters);
  fetches_.erase(i);
  for (auto& rp : waiters)
    rp.deliver(caf::make_error(ec::staging_failed, reason));
}

size_t staging_state::cache_keep_only(const std::string& model_id) {
  size_t dropped = 0;
  for (auto i = lru_.begin(); i != lru_.end();) {
    if (i->model_id == model_id) {
      ++i;
      continue;
    }
    cached_bytes_ -= i->bytes->size();
    index_.erase(i->model_id);
    i = lru_.erase(i);
    ++dropped;
  }
  return dropped;
}

std::string staging_state::render_(const caf::error& err) const {
  if (self != nullptr)
    return self->system().render(err);
  return render(err);
}

// -- behavior -----------------------------------------------------------------

staging_actor::behavior_type
staging(staging_actor::stateful_pointer<staging_state> self,
        std::shared_ptr<storage::model_store> store, model_source_actor source,
        staging_config cfg) {
  assert(store != nullptr);
  auto& st = self->state;
  st.self = self;
  st.store = std::move(store);
  st.source = std::move(source);
  st.cfg = cfg;
  if (auto err = validate(cfg))
    self->quit(std::move(err));
  return {
    [self](caf::get_atom,
           const std::string& model_id) -> caf::result<model_blob> {
      if (auto err = storage::validate_model_id(model_id))
        return err;
      auto rp = self->make_response_promise<model_blob>();
      self->state.serve(model_id, rp);
      return rp;
    },
    [self](const timer_tick& tick) { self->state.on_timer(tick); },
    [self](committed_atom, const std::string& model_id) {
      self->state.cache_keep_only(model_id);
    },
  };
}

} // namespace rondo
