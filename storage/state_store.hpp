#pragma once

// The state store: Rondo's durable records, one RocksDB column family per
// record kind, values as protobuf (messages/proto/records.proto).

#include "messages/records.hpp"
#include "storage/database.hpp"

#include <caf/expected.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace rondo::storage {

/// The record kinds the state store keeps, each in its own column family,
/// keyed by its id: job_record (job_id), round_record (round_id),
/// session_record (session_id), model_record (model_id),
/// validation_record (validation_id), client_record (client_id),
/// metric_record (metric_id), client_assignment_record (client_id),
/// status_record (status_id), prediction_record (key).
///
/// Beside the records, a small ordered index (column family "indexes")
/// keeps each session's round ids in order and named counters; its writes
/// are synced.
///
/// Durability: writes of jobs, rounds, sessions, the model trail and client
/// assignments use a synced WAL (they survive a power loss once the call
/// returns); clients, validations, metrics, statuses and predictions do not
/// (they survive a process crash, and a power loss may lose the last few).
template <class Record>
struct record_traits;

/// Several puts and deletes, of any record kinds, applied atomically by
/// `state_store::commit`.
class state_batch {
public:
  template <class Record>
  void put(const Record& x);

  template <class Record>
  void erase(const std::string& id);

  /// Appends `round_id` to the session's round index at `position`
  /// (0-based; the session record's round_count before this round).
  void add_session_round(const std::string& session_id, uint64_t position,
                         const std::string& round_id);

  /// Sets the persisted counter `name` (e.g. "next_round") to `value`.
  void put_counter(const std::string& name, uint64_t value);

  bool empty() const {
    return ops_.empty();
  }

private:
  friend class state_store;
  struct op {
    size_t family;
    std::string key;
    std::string value;
    bool erase;
    bool sync;
  };
  std::vector<op> ops_;
};

/// Typed access to the state records in the shared database. Thread-safe.
class state_store {
public:
  /// @returns `ec::invalid_argument` without a database.
  static caf::expected<std::shared_ptr<state_store>>
  open(std::shared_ptr<database> db);

  /// Stores `x` under its id, replacing any previous record.
  /// @returns `ec::invalid_argument` for an empty id, `ec::storage_error`.
  template <class Record>
  caf::error put(const Record& x);

  /// @returns the record, `ec::not_found` naming kind and id, or
  ///          `ec::corrupt` if the stored bytes do not decode.
  template <class Record>
  caf::expected<Record> get(const std::string& id);

  /// Every record of the kind, ordered by id.
  template <class Record>
  caf::expected<std::vector<Record>> list();

  /// Removes the record; removing an absent id is not an error.
  template <class Record>
  caf::error erase(const std::string& id);

  /// Applies every operation of `batch` atomically, with a synced WAL if any
  /// operation's kind is synced.
  caf::error commit(state_batch& batch);

  /// The round ids of a session's round index from `from` (a position) on,
  /// in order, at most `limit` of them. Reads only those entries (one
  /// seek), whatever the session's length.
  /// @returns `ec::storage_error`, `ec::corrupt`.
  caf::expected<std::vector<std::string>>
  session_rounds(const std::string& session_id, uint64_t from = 0,
                 size_t limit = SIZE_MAX);

  /// Every round id of the session from position `from` on: those a
  /// record written before the round index carries
  /// (session_record::round_ids), then the index's.
  /// @returns `ec::storage_error`, `ec::corrupt`.
  caf::expected<std::vector<std::string>>
  round_ids_of(const session_record& rec, uint64_t from = 0);

  /// The persisted counter `name`; `fallback` when it was never set.
  /// @returns `ec::corrupt` for a stored value that is not a number,
  ///          `ec::storage_error`.
  caf::expected<uint64_t> counter(const std::string& name,
                                  uint64_t fallback = 0);

private:
  explicit state_store(std::shared_ptr<database> db);
  std::shared_ptr<database> db_;
};

} // namespace rondo::storage
