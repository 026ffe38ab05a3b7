#include "storage/state_store.hpp"

#include "messages/error.hpp"
#include "messages/records_codec.hpp"
#include "storage/database_impl.hpp"

#include <rocksdb/write_batch.h>

#include <cerrno>
#include <cstdlib>

namespace rondo::storage {

#define RONDO_RECORD(T, family, id_field, synced)                              \
  template <>                                                                  \
  struct record_traits<T> {                                                    \
    static constexpr cf column = cf::family;                                   \
    static constexpr const char* kind = #family;                               \
    static constexpr bool sync = synced;                                       \
    static const std::string& id(const T& x) {                                 \
      return x.id_field;                                                       \
    }                                                                          \
  };
RONDO_RECORD(job_record, jobs, job_id, true)
RONDO_RECORD(round_record, rounds, round_id, true)
RONDO_RECORD(session_record, sessions, session_id, true)
RONDO_RECORD(model_record, models, model_id, true)
RONDO_RECORD(validation_record, validations, validation_id, false)
RONDO_RECORD(client_record, clients, client_id, false)
RONDO_RECORD(metric_record, metrics, metric_id, false)
RONDO_RECORD(client_assignment_record, client_assignments, client_id, true)
RONDO_RECORD(status_record, statuses, status_id, false)
RONDO_RECORD(prediction_record, predictions, key, false)
#undef RONDO_RECORD

template <class Record>
void state_batch::put(const Record& x) {
  using traits = record_traits<Record>;
  ops_.push_back({static_cast<size_t>(traits::column), traits::id(x),
                  encode(x), false, traits::sync});
}

template <class Record>
void state_batch::erase(const std::string& id) {
  using traits = record_traits<Record>;
  ops_.push_back({static_cast<size_t>(traits::column), id, {}, true,
                  traits::sync});
}

namespace {

constexpr size_t indexes = static_cast<size_t>(cf::indexes);

// "s/<session>/" + the position as 20 digits: entries of one session sort
// by position.
std::string session_round_prefix(const std::string& session_id) {
  return "s/" + session_id + "/";
}

std::string position_text(uint64_t position) {
  auto digits = std::to_string(position);
  return std::string(20 - digits.size(), '0') + digits;
}

} // namespace

void state_batch::add_session_round(const std::string& session_id,
                                    uint64_t position,
                                    const std::string& round_id) {
  ops_.push_back({indexes,
                  session_round_prefix(session_id) + position_text(position),
                  round_id, false, true});
}

void state_batch::put_counter(const std::string& name, uint64_t value) {
  ops_.push_back({indexes, "c/" + name, std::to_string(value), false, true});
}

caf::expected<std::vector<std::string>>
state_store::session_rounds(const std::string& session_id, uint64_t from,
                            size_t limit) {
  auto& impl = db_->get();
  auto prefix = session_round_prefix(session_id);
  std::vector<std::string> result;
  std::unique_ptr<rocksdb::Iterator> it{
    impl.db->NewIterator(rocksdb::ReadOptions{}, impl.handles[indexes])};
  for (it->Seek(prefix + position_text(from));
       it->Valid() && it->key().starts_with(prefix) && result.size() < limit;
       it->Next())
    result.push_back(it->value().ToString());
  if (auto err = to_error(it->status(),
                          "listing the rounds of session " + session_id))
    return err;
  return result;
}

caf::expected<std::vector<std::string>>
state_store::round_ids_of(const session_record& rec, uint64_t from) {
  std::vector<std::string> out;
  auto legacy = static_cast<uint64_t>(rec.round_ids.size());
  for (auto i = from; i < legacy; ++i)
    out.push_back(rec.round_ids[i]);
  auto more = session_rounds(rec.session_id, from > legacy ? from - legacy : 0);
  if (!more)
    return more.error();
  out.insert(out.end(), more->begin(), more->end());
  return out;
}

caf::expected<uint64_t> state_store::counter(const std::string& name,
                                             uint64_t fallback) {
  auto& impl = db_->get();
  std::string raw;
  auto st = impl.db->Get(rocksdb::ReadOptions{}, impl.handles[indexes],
                         "c/" + name, &raw);
  if (st.IsNotFound())
    return fallback;
  if (auto err = to_error(st, "reading counter " + name))
    return err;
  char* end = nullptr;
  errno = 0;
  auto value = std::strtoull(raw.c_str(), &end, 10);
  if (raw.empty() || end != raw.c_str() + raw.size() || errno != 0)
    return caf::make_error(ec::corrupt, "counter " + name
                                          + " holds '" + raw
                                          + "', not a number");
  return static_cast<uint64_t>(value);
}

state_store::state_store(std::shared_ptr<database> db) : db_(std::move(db)) {
}

caf::expected<std::shared_ptr<state_store>>
state_store::open(std::shared_ptr<database> db) {
  if (!db)
    return caf::make_error(ec::invalid_argument,
                           "state store needs a database");
  return std::shared_ptr<state_store>{new state_store(std::move(db))};
}

template <class Record>
caf::error state_store::put(const Record& x) {
  state_batch batch;
  batch.put(x);
  return commit(batch);
}

template <class Record>
caf::expected<Record> state_store::get(const std::string& id) {
  using traits = record_traits<Record>;
  auto& impl = db_->get();
  std::string raw;
  auto st = impl.db->Get(rocksdb::ReadOptions{}, impl.handle(traits::column),
                         id, &raw);
  if (st.IsNotFound())
    return caf::make_error(ec::not_found, std::string{traits::kind} + " has "
                                            "no record " + id);
  if (auto err = to_error(st, std::string{"reading "} + traits::kind + " "
                                + id))
    return err;
  Record result;
  if (auto err = decode(raw, result))
    return caf::make_error(ec::corrupt, std::string{traits::kind} + " " + id
                                          + ": " + render(err));
  return result;
}

template <class Record>
caf::expected<std::vector<Record>> state_store::list() {
  using traits = record_traits<Record>;
  auto& impl = db_->get();
  std::vector<Record> result;
  std::unique_ptr<rocksdb::Iterator> it{
    impl.db->NewIterator(rocksdb::ReadOptions{}, impl.handle(traits::column))};
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    Record x;
    auto value = it->value();
    if (auto err = decode({value.data(), value.size()}, x))
      return caf::make_error(ec::corrupt, std::string{traits::kind} + " "
                                            + it->key().ToString() + ": "
                                            + render(err));
    result.push_back(std::move(x));
  }
  if (auto err = to_error(it->status(), std::string{"listing "}
                                          + traits::kind))
    return err;
  return result;
}

template <class Record>
caf::error state_store::erase(const std::string& id) {
  state_batch batch;
  batch.erase<Record>(id);
  return commit(batch);
}

caf::error state_store::commit(state_batch& batch) {
  if (batch.empty())
    return caf::none;
  auto& impl = db_->get();
  rocksdb::WriteBatch wb;
  bool sync = false;
  for (auto& op : batch.ops_) {
    if (op.key.empty())
      return caf::make_error(ec::invalid_argument,
                             "state record with an empty id");
    auto* h = impl.handles[op.family];
    auto st = op.erase ? wb.Delete(h, op.key) : wb.Put(h, op.key, op.value);
    if (auto err = to_error(st, "batching state record " + op.key))
      return err;
    sync = sync || op.sync;
  }
  rocksdb::WriteOptions wo;
  wo.sync = sync;
  if (auto err = to_error(impl.db->Write(wo, &wb), "writing state records"))
    return err;
  batch.ops_.clear();
  return caf::none;
}

#define RONDO_INSTANTIATE(T)                                                   \
  template void state_batch::put<T>(const T&);                                 \
  template void state_batch::erase<T>(const std::string&);                     \
  template caf::error state_store::put<T>(const T&);                           \
  template caf::expected<T> state_store::get<T>(const std::string&);           \
  template caf::expected<std::vector<T>> state_store::list<T>();               \
  template caf::error state_store::erase<T>(const std::string&);
RONDO_INSTANTIATE(job_record)
RONDO_INSTANTIATE(round_record)
RONDO_INSTANTIATE(session_record)
RONDO_INSTANTIATE(model_record)
RONDO_INSTANTIATE(validation_record)
RONDO_INSTANTIATE(client_record)
RONDO_INSTANTIATE(metric_record)
RONDO_INSTANTIATE(client_assignment_record)
RONDO_INSTANTIATE(status_record)
RONDO_INSTANTIATE(prediction_record)
#undef RONDO_INSTANTIATE

} // namespace rondo::storage
