#pragma once

// Retention: what the controller's model trail and a combiner's stores
// keep over a long federation, and what they give back.

#include <caf/expected.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace rondo::storage {

class model_store;
class state_store;

/// The models a `prune_trail` never deletes beside the ones its caller
/// names: every session's current global model (session_record::
/// global_model_id) and the seed of every pending or running session.
/// @returns `ec::storage_error` or `ec::corrupt` from the state store.
caf::expected<std::vector<std::string>>
session_protected_models(state_store& state);

/// `rondo models prune --keep N`: keeps the bytes of the newest `keep`
/// models of the trail (by committed_at) and of every protected model
/// (`protect`, the caller's, e.g. the model a running round started from,
/// plus session_protected_models), and deletes every other trail model's
/// bytes from `models`. The trail records stay (FEDn keeps its trail); a
/// pruned model's download then answers 404 naming it as pruned. The
/// deleted bytes' disk space is given back (model_store::remove_many
/// compacts). Models that have no bytes left (pruned before) are not
/// listed again.
/// @returns the ids whose bytes were deleted, oldest first;
///          `ec::invalid_argument` for keep 0 (the trail's newest model is
///          always kept); a storage error (then nothing or only some of the
///          listed models were deleted, each one wholly).
caf::expected<std::vector<std::string>>
prune_trail(state_store& state, model_store& models, uint64_t keep,
            const std::vector<std::string>& protect);

/// How much of its own history a combiner keeps.
struct combiner_retention {
  /// Finished (succeeded or failed) jobs kept in the combiner's state
  /// store, with their round records; the newest go last. Default 100: the
  /// controller keeps every round and the trail, so a combiner's records
  /// serve only a look at its recent rounds (`rondo store`, the combiner's
  /// logs), and 100 rounds span several hours of FEDn's 180 s default
  /// round timeout.
  size_t max_finished_jobs = 100;
  /// Models a combiner without a controller keeps beside those its queued
  /// and running jobs need: its newest aggregates (by commit time), which
  /// the operator that runs its rounds reads and starts the next round
  /// from. Default 3: the last round's aggregate and two before it.
  size_t standalone_models = 3;
};

/// What a retention pass removed.
struct retention_result {
  std::vector<std::string> models;
  size_t jobs = 0;
  size_t rounds = 0;
  size_t validations = 0;
  size_t metrics = 0;
};

/// Removes from a combiner's model store every model but `keep` (e.g. the
/// global model the controller just committed), the start model of every
/// queued or running job in `state`, and, for a combiner without a
/// controller, its newest `cfg.standalone_models` models (pass
/// `standalone` true). Model updates held in the update cache are left to
/// their rounds.
/// @returns the removed model ids (ordered by id); a storage error.
caf::expected<std::vector<std::string>>
drop_combiner_models(state_store& state, model_store& models,
                     const std::vector<std::string>& keep, bool standalone,
                     const combiner_retention& cfg = {});

/// Bounds a combiner's records: once more than `cfg.max_finished_jobs`
/// plus a tenth are finished, keeps the newest `cfg.max_finished_jobs`
/// finished jobs (by queue position) and every queued or running one; the
/// round records, validations and metrics of the dropped jobs' rounds go
/// with them. Records of other rounds (none on a combiner) stay.
/// @returns the counts removed in `retention_result` (models empty); a
///          storage error.
caf::expected<retention_result>
trim_combiner_records(state_store& state, const combiner_retention& cfg = {});

} // namespace rondo::storage
