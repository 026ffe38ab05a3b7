#pragma once

// Private to storage/*.cpp: the RocksDB objects behind `database`.

#include "storage/database.hpp"

#include <caf/error.hpp>
#include <rocksdb/db.h>

#include <memory>
#include <string>
#include <vector>

namespace rondo::storage {

/// Column family indices; the order matches `column_family_names`.
enum class cf : size_t {
  default_cf,
  model_meta,
  model_chunks,
  model_pending,
  jobs,
  rounds,
  sessions,
  models,
  validations,
  clients,
  metrics,
  client_assignments,
  statuses,
  predictions,
  indexes,
  count_,
};

struct database::impl {
  std::string path;
  std::unique_ptr<rocksdb::DB> db;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;

  rocksdb::ColumnFamilyHandle* handle(cf x) const {
    return handles[static_cast<size_t>(x)];
  }

  ~impl();
};

/// Maps a RocksDB status to `ec::corrupt` (Corruption), `ec::not_found`
/// (NotFound) or `ec::storage_error` (all else), with `what` and RocksDB's
/// text as context. Returns no error for an OK status.
caf::error to_error(const rocksdb::Status& st, const std::string& what);

} // namespace rondo::storage
