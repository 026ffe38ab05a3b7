#include "storage/trail.hpp"

#include "messages/error.hpp"
#include "messages/records.hpp"
#include "storage/model_store.hpp"
#include "storage/state_store.hpp"

#include <algorithm>
#include <set>
#include <unordered_set>

namespace rondo::storage {

namespace {

// Removes `ids` (each known to exist) from `models`. @returns `ids`.
caf::expected<std::vector<std::string>>
remove_all(model_store& models, std::vector<std::string> ids) {
  if (ids.empty())
    return ids;
  if (auto n = models.remove_many(ids); !n)
    return n.error();
  return ids;
}

} // namespace

caf::expected<std::vector<std::string>>
session_protected_models(state_store& state) {
  auto sessions = state.list<session_record>();
  if (!sessions)
    return sessions.error();
  std::vector<std::string> result;
  for (auto& s : *sessions) {
    if (!s.global_model_id.empty())
      result.push_back(s.global_model_id);
    auto live = s.status == session_status::pending
                || s.status == session_status::running;
    if (live && !s.seed_model_id.empty())
      result.push_back(s.seed_model_id);
  }
  return result;
}

caf::expected<std::vector<std::string>>
prune_trail(state_store& state, model_store& models, uint64_t keep,
            const std::vector<std::string>& protect) {
  if (keep == 0)
    return caf::make_error(ec::invalid_argument,
                           "keep must be at least 1 (the newest model of the "
                           "trail is always kept), got 0");
  auto trail = state.list<model_record>();
  if (!trail)
    return trail.error();
  auto sessions = session_protected_models(state);
  if (!sessions)
    return sessions.error();
  std::unordered_set<std::string> kept{protect.begin(), protect.end()};
  kept.insert(sessions->begin(), sessions->end());
  // Newest first; ties (one clock tick) by id, so the choice is stable.
  std::sort(trail->begin(), trail->end(), [](auto& x, auto& y) {
    return x.committed_at != y.committed_at ? x.committed_at > y.committed_at
                                            : x.model_id > y.model_id;
  });
  std::vector<std::string> doomed;
  for (size_t i = 0; i < trail->size(); ++i) {
    auto& id = (*trail)[i].model_id;
    if (i < keep || kept.count(id) > 0)
      continue;
    auto present = models.exists(id);
    if (!present)
      return present.error();
    if (*present)
      doomed.push_back(id);
  }
  std::reverse(doomed.begin(), doomed.end());
  return remove_all(models, std::move(doomed));
}

caf::expected<std::vector<std::string>>
drop_combiner_models(state_store& state, model_store& models,
                     const std::vector<std::string>& keep, bool standalone,
                     const combiner_retention& cfg) {
  std::unordered_set<std::string> kept{keep.begin(), keep.end()};
  auto jobs = state.list<job_record>();
  if (!jobs)
    return jobs.error();
  for (auto& j : *jobs)
    if (j.status == job_status::queued || j.status == job_status::running)
      kept.insert(j.config.model_id);
  auto stored = models.list();
  if (!stored)
    return stored.error();
  if (standalone) {
    auto newest = *stored;
    std::sort(newest.begin(), newest.end(), [](auto& x, auto& y) {
      return x.committed_at > y.committed_at;
    });
    for (size_t i = 0; i < newest.size() && i < cfg.standalone_models; ++i)
      kept.insert(newest[i].model_id);
  }
  std::vector<std::string> doomed;
  for (auto& m : *stored)
    if (kept.count(m.model_id) == 0)
      doomed.push_back(m.model_id);
  return remove_all(models, std::move(doomed));
}

namespace {

// Adds to `batch` the erasure of every Record of a round in `rounds`,
// counting them in `n`; `id` gives a record's key.
template <class Record, class Id>
caf::error erase_of_rounds(state_store& state,
                           const std::set<std::string>& rounds,
                           state_batch& batch, size_t& n, Id id) {
  auto xs = state.list<Record>();
  if (!xs)
    return xs.error();
  for (auto& x : *xs)
    if (rounds.count(x.round_id) > 0) {
      batch.erase<Record>(id(x));
      ++n;
    }
  return caf::none;
}

} // namespace

caf::expected<retention_result>
trim_combiner_records(state_store& state, const combiner_retention& cfg) {
  retention_result out;
  auto jobs = state.list<job_record>();
  if (!jobs)
    return jobs.error();
  std::vector<const job_record*> finished;
  for (auto& j : *jobs)
    if (j.status == job_status::success || j.status == job_status::failed)
      finished.push_back(&j);
  // A tenth of slack: the validations and metrics are read once every
  // max/10 rounds, not every round.
  if (finished.size() <= cfg.max_finished_jobs + cfg.max_finished_jobs / 10)
    return out;
  std::sort(finished.begin(), finished.end(),
            [](auto* x, auto* y) { return x->seq < y->seq; });
  auto drop = finished.size() - cfg.max_finished_jobs;
  // A round id that a kept job (or a queued or running one) still names
  // keeps its round record, validations and metrics.
  std::set<std::string> live_rounds;
  std::set<std::string> dead_rounds;
  for (size_t i = drop; i < finished.size(); ++i)
    live_rounds.insert(finished[i]->config.round_id);
  for (auto& j : *jobs)
    if (j.status == job_status::queued || j.status == job_status::running)
      live_rounds.insert(j.config.round_id);
  state_batch batch;
  for (size_t i = 0; i < drop; ++i) {
    batch.erase<job_record>(finished[i]->job_id);
    ++out.jobs;
    auto& rid = finished[i]->config.round_id;
    if (!rid.empty() && live_rounds.count(rid) == 0
        && dead_rounds.insert(rid).second) {
      batch.erase<round_record>(rid);
      ++out.rounds;
    }
  }
  if (!dead_rounds.empty()) {
    if (auto err = erase_of_rounds<validation_record>(
          state, dead_rounds, batch, out.validations,
          [](auto& v) -> auto& { return v.validation_id; }))
      return err;
    if (auto err = erase_of_rounds<metric_record>(
          state, dead_rounds, batch, out.metrics,
          [](auto& m) -> auto& { return m.metric_id; }))
      return err;
  }
  if (auto err = state.commit(batch))
    return err;
  return out;
}

} // namespace rondo::storage
