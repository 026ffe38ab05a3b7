#include "actors/aggregator.hpp"

#include "actors/type_ids.hpp"
#include "api/metrics.hpp"
#include "messages/error.hpp"
#include "model/aggregator.hpp"
#include "model/npz.hpp"
#include "storage/model_store.hpp"

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
  auto bytes = store->get(update.model_update_id);
  if (!bytes)
    return reject("cannot load model update " + update.model_update_id
                  + ": " + render(bytes.error()));
  auto reader = npz_reader::open_bytes(std::string_view{*bytes});
  if (!reader)
    return reject("model update " + update.model_update_id
                  + " is not a valid model: " + error_detail(reader.error()));
  if (auto err = agg->add(**reader, update.num_examples))
    return reject(render(err));
  folded.insert(update.model_update_id);
  return {true, {}};
}

caf::expected<model_record>
aggregator_actor_state::finish(const std::string& model_id) {
  auto fail = [&](const std::string& why) {
    return caf::make_error(ec::aggregation_failed, why);
  };
  auto result = agg->finish();
  if (!result)
    return fail(render(result.error()));
  auto bytes = write_npz_bytes(*result);
  if (!bytes)
    return fail("cannot encode the aggregate: " + render(bytes.error()));
  auto info = store->put(model_id, *bytes);
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
      -> caf::result<model_record> {
      auto t0 = std::chrono::steady_clock::now();
      auto rec = self->state.finish(model_id);
      metrics::observe_aggregation(metrics::aggregation_step::finish,
                                   seconds_since(t0));
      if (!rec)
        return rec.error();
      return *rec;
    },
  };
}

} // namespace rondo
