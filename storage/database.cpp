#include "storage/database.hpp"

#include "messages/error.hpp"
#include "storage/database_impl.hpp"

#include <rocksdb/options.h>
#include <rocksdb/cache.h>
#include <rocksdb/table.h>
#include <rocksdb/write_buffer_manager.h>

#include <filesystem>

namespace rondo::storage {

namespace {

const char* const column_family_names[] = {
  "default",  "model_meta", "model_chunks", "model_pending",
  "jobs",     "rounds",     "sessions",     "models",
  "validations", "clients", "metrics", "client_assignments", "statuses",
  "predictions", "indexes",
};
static_assert(std::size(column_family_names)
              == static_cast<size_t>(cf::count_));

} // namespace

caf::error to_error(const rocksdb::Status& st, const std::string& what) {
  if (st.ok())
    return caf::none;
  auto text = what + ": " + st.ToString();
  if (st.IsCorruption())
    return caf::make_error(ec::corrupt, std::move(text));
  if (st.IsNotFound())
    return caf::make_error(ec::not_found, std::move(text));
  return caf::make_error(ec::storage_error, std::move(text));
}

database::impl::~impl() {
  if (db) {
    for (auto* h : handles)
      if (h)
        db->DestroyColumnFamilyHandle(h);
    db->Close();
  }
}

database::database(std::unique_ptr<impl> ptr) : impl_(std::move(ptr)) {
}

database::~database() = default;

const std::string& database::path() const {
  return impl_->path;
}

caf::expected<std::shared_ptr<database>>
database::open(const std::string& path) {
  database_options opts;
  opts.path = path;
  return open(opts);
}

caf::expected<std::shared_ptr<database>>
database::open(const database_options& opts) {
  if (opts.path.empty())
    return caf::make_error(ec::invalid_argument, "database path is empty");
  std::error_code fs_err;
  std::filesystem::create_directories(opts.path, fs_err);
  if (fs_err)
    return caf::make_error(ec::storage_error,
                           "cannot create database directory " + opts.path
                             + ": " + fs_err.message());
  rocksdb::DBOptions db_opts;
  db_opts.create_if_missing = true;
  db_opts.create_missing_column_families = true;
  db_opts.max_background_jobs = 2;
  // RocksDB's own info LOG and MANIFEST grow with every flush and
  // compaction: rotated at 1 MiB (four kept) and rolled over at 4 MiB,
  // they stay bounded over a session of any length.
  db_opts.keep_log_file_num = 4;
  db_opts.max_log_file_size = size_t{1} << 20;
  db_opts.max_manifest_file_size = size_t{4} << 20;
  db_opts.max_total_wal_size = opts.wal_bytes;
  // One memory budget for every column family's memtables and one block
  // cache: without them each column family sizes its own (RocksDB 7.8:
  // 8 MiB of cache per table factory, 64 MiB memtables for the chunks).
  db_opts.write_buffer_manager =
    std::make_shared<rocksdb::WriteBufferManager>(opts.memtable_bytes);
  auto cache = rocksdb::NewLRUCache(opts.block_cache_bytes);
  rocksdb::ColumnFamilyOptions small;
  small.OptimizeForSmallDb(&cache);
  // Model chunks are large values written once and read sequentially.
  // Chunked keys (1 MiB values) give streaming reads and writes: a model is
  // never whole in memory. Blob files would keep those values out of
  // compactions, but bench/model_store measured them slower on every path
  // here (see database_options), so chunks are plain SST values unless
  // enable_blob_files is set.
  rocksdb::ColumnFamilyOptions chunks;
  chunks.write_buffer_size = opts.memtable_bytes / 2;
  rocksdb::BlockBasedTableOptions chunk_table;
  chunk_table.block_cache = cache;
  chunks.table_factory.reset(rocksdb::NewBlockBasedTableFactory(chunk_table));
  chunks.compression = rocksdb::kNoCompression;
  chunks.enable_blob_files = opts.enable_blob_files;
  chunks.min_blob_size = opts.blob_min_bytes;
  chunks.blob_file_size = 256 << 20;
  chunks.enable_blob_garbage_collection = opts.enable_blob_files;
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  for (size_t i = 0; i < static_cast<size_t>(cf::count_); ++i) {
    auto& o = i == static_cast<size_t>(cf::model_chunks) ? chunks : small;
    descriptors.emplace_back(column_family_names[i], o);
  }
  auto state = std::make_unique<impl>();
  state->path = opts.path;
  rocksdb::DB* raw = nullptr;
  auto st = rocksdb::DB::Open(db_opts, opts.path, descriptors,
                              &state->handles, &raw);
  if (!st.ok()) {
    auto what = "cannot open database " + opts.path;
    if (st.ToString().find("LOCK") != std::string::npos)
      what += " (another Rondo process, a combiner, a controller or a "
              "`rondo store` command, is using it)";
    return to_error(st, what);
  }
  state->db.reset(raw);
  return std::shared_ptr<database>{new database(std::move(state))};
}

caf::error database::flush() {
  rocksdb::FlushOptions fo;
  fo.wait = true;
  return to_error(impl_->db->Flush(fo, impl_->handles),
                  "flush of " + impl_->path);
}

} // namespace rondo::storage
