#include "actors/aggregator.hpp"

#include "actors/type_ids.hpp"
#include "api/metrics.hpp"
#include "messages/error.hpp"
#include "model/aggregator.hpp"
#include "model/npz.hpp"
#include "model/npz_stream.hpp"
#include "storage/model_store.hpp"
#include "storage/update_cache.hpp"

#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

#include <algorithm>
#include <chrono>

namespace rondo {

namespace {

// Seconds of the steady clock since `t0` (what an aggregation step took).
double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
    .count();
}

} // namespace

update_verdict aggregator_actor_state::add(const model_update& update) {
  auto reject = [&](const std::string& why) {
    return update_verdict{false, why};
  };
  if (folded.count(update.model_update_id) > 0)
    return reject("model update " + update.model_update_id
                  + " was already aggregated");
  auto& id = update.model_update_id;
  // Uploads are decoded as they arrive (the update cache); a model update
  // that reached the store otherwise is decoded from it chunk by chunk.
  caf::expected<std::shared_ptr<decoded_update>> decoded{caf::error{}};
  auto& cache = store->updates();
  if (cache)
    decoded = cache->find(id);
  bool cached = cache && (decoded || decoded.error() != ec::not_found);
  if (!cached) {
    auto opts = cache ? cache->decoder_options() : npz_stream_options{};
    decoded = storage::read_decoded(*store, id, opts);
    if (!decoded && decoded.error() == ec::not_found)
      return reject("cannot load model update " + id + ": "
                    + render(decoded.error()));
  }
  if (!decoded)
    return reject("model update " + id + " is not a valid model: "
                  + error_detail(decoded.error()));
  auto t0 = std::chrono::steady_clock::now();
  auto err = agg->add(**decoded, update.num_examples);
  auto fold_seconds = seconds_since(t0);
  if (err)
    return update_verdict{false, render(err), fold_seconds};
  folded.insert(id);
  // Folded: its values are no longer needed (a rejected one stays, for the
  // edge to delete or keep).
  if (cached)
    cache->remove(id);
  return {true, {}, fold_seconds};
}

caf::expected<model_record>
aggregator_actor_state::finish(const std::string& model_id) {
  auto fail = [&](const std::string& why) {
    return caf::make_error(ec::aggregation_failed, why);
  };
  auto t0 = std::chrono::steady_clock::now();
  auto result = agg->finish();
  aggregate_seconds = seconds_since(t0);
  if (!result)
    return fail(render(result.error()));
  t0 = std::chrono::steady_clock::now();
  auto bytes = write_npz_bytes(*result);
  if (!bytes)
    return fail("cannot encode the aggregate: " + render(bytes.error()));
  auto info = store->put(model_id, *bytes);
  write_seconds = seconds_since(t0);
  if (!info)
    return fail("cannot store the aggregate as " + model_id + ": "
                + render(info.error()));
  model_record rec;
  rec.model_id = model_id;
  rec.committed_at = info->committed_at;
  return rec;
}

aggregator_actor::behavior_type
aggregator_actor_impl(aggregator_actor::stateful_pointer<aggregator_actor_state> self,
                      std::shared_ptr<aggregator> agg,
                      std::shared_ptr<storage::model_store> store) {
  self->state.agg = std::move(agg);
  self->state.store = std::move(store);
  return {
    [self](const model_update& update) {
      auto t0 = std::chrono::steady_clock::now();
      auto verdict = self->state.add(update);
      metrics::observe_aggregation(metrics::aggregation_step::update,
                                   seconds_since(t0));
      return verdict;
    },
    [self](finish_atom, const std::string& model_id)
      -> caf::result<model_record, double, double> {
      auto t0 = std::chrono::steady_clock::now();
      auto rec = self->state.finish(model_id);
      metrics::observe_aggregation(metrics::aggregation_step::finish,
                                   seconds_since(t0));
      if (!rec)
        return rec.error();
      return {*rec, self->state.aggregate_seconds,
              self->state.write_seconds};
    },
  };
}

} // namespace rondo
