#pragma once

// The aggregator actor: one per training round. It takes each model update
// decoded from the update cache (or decodes it from the model store),
// validates it against the global model and folds it into the running
// aggregate (model/aggregator.hpp), and on `finish` writes the new global
// model to the model store.

#include "actors/actors.hpp"

#include <memory>
#include <string>
#include <unordered_set>

namespace rondo {

class aggregator;

namespace storage {
class model_store;
} // namespace storage

struct aggregator_actor_state {
  static inline constexpr const char* name = "aggregator";

  /// The aggregation in progress; begun on the global model by the round.
  std::shared_ptr<aggregator> agg;
  std::shared_ptr<storage::model_store> store;
  /// Ids of the updates already folded in (each counts once).
  std::unordered_set<std::string> folded;
  /// Seconds the last finish() spent computing the aggregate and writing
  /// it to the store.
  double aggregate_seconds = 0;
  double write_seconds = 0;

  /// Takes the decoded update from the store's update cache (else decodes
  /// it from the store chunk by chunk) and folds it in; an accepted update
  /// leaves the cache at once. The verdict's fold_seconds is the time the
  /// check and fold took (not the load). Rejected (with the reason) when it cannot be
  /// read, is not a valid npz, does not match the global model, holds a
  /// non-finite value, or has a bad num_examples; the aggregate is then
  /// unchanged.
  update_verdict add(const model_update& update);

  /// Finishes the aggregation and stores the result as `model_id` (STORED
  /// npz). @returns ec::aggregation_failed with the reason when no update
  /// was accepted, the result is not finite, or the store write fails.
  caf::expected<model_record> finish(const std::string& model_id);
};

/// Spawn with an aggregator already begun on the round's global model
/// (so configuration errors fail the round before any task is sent).
aggregator_actor::behavior_type
aggregator_actor_impl(aggregator_actor::stateful_pointer<aggregator_actor_state> self,
                      std::shared_ptr<aggregator> agg,
                      std::shared_ptr<storage::model_store> store);

} // namespace rondo
