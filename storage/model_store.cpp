#include "storage/model_store.hpp"

#include "messages/error.hpp"
#include "messages/ids.hpp"
#include "records.pb.h"
#include "storage/database_impl.hpp"

#include <rocksdb/sst_file_writer.h>
#include <rocksdb/write_batch.h>
#include <xxhash.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <optional>
#include <system_error>

namespace rondo::storage {

namespace {

std::string chunk_key(const std::string& id, uint64_t index) {
  std::string key = id;
  key.push_back('\0');
  for (int shift = 56; shift >= 0; shift -= 8)
    key.push_back(static_cast<char>((index >> shift) & 0xff));
  return key;
}

// [begin, end) covering every chunk key of `id`.
std::pair<std::string, std::string> chunk_range(const std::string& id) {
  auto begin = id;
  begin.push_back('\0');
  auto end = id;
  end.push_back('\1');
  return {begin, end};
}

caf::expected<std::optional<rondo::store::ModelMeta>>
read_meta(database::impl& db, const std::string& id) {
  std::string raw;
  auto st = db.db->Get(rocksdb::ReadOptions{}, db.handle(cf::model_meta), id,
                       &raw);
  if (st.IsNotFound())
    return std::optional<rondo::store::ModelMeta>{};
  if (auto err = to_error(st, "reading metadata of model " + id))
    return err;
  rondo::store::ModelMeta meta;
  if (!meta.ParseFromString(raw))
    return caf::make_error(ec::corrupt,
                           "metadata of model " + id + " is corrupt");
  return std::optional<rondo::store::ModelMeta>{std::move(meta)};
}

// The metadata of a model committed now.
rondo::store::ModelMeta make_meta(const std::string& id, uint64_t size,
                                  uint32_t chunk_bytes, uint64_t chunks,
                                  uint64_t checksum) {
  rondo::store::ModelMeta meta;
  meta.set_model_id(id);
  meta.set_size_bytes(size);
  meta.set_chunk_bytes(chunk_bytes);
  meta.set_chunk_count(chunks);
  meta.set_xxh3_64(checksum);
  meta.set_committed_at(unix_now());
  return meta;
}

model_info to_info(const rondo::store::ModelMeta& m) {
  return {m.model_id(),    m.size_bytes(),  m.xxh3_64(),
          m.committed_at(), m.chunk_bytes(), m.chunk_count()};
}

// Reads one chunk; `where` names it in errors.
caf::expected<std::string> get_chunk(database::impl& db, const model_info& info,
                                     uint64_t index) {
  auto& id = info.model_id;
  auto where = "chunk " + std::to_string(index) + " of model " + id;
  rocksdb::ReadOptions ro;
  ro.verify_checksums = true;
  ro.fill_cache = false;
  std::string out;
  auto status = db.db->Get(ro, db.handle(cf::model_chunks),
                           chunk_key(id, index), &out);
  if (status.IsNotFound())
    return caf::make_error(ec::corrupt,
                           "model " + id + " is corrupt: " + where
                             + " is missing");
  if (status.IsCorruption())
    return caf::make_error(ec::corrupt, "model " + id + " is corrupt: "
                                          + where + ": " + status.ToString());
  if (auto err = to_error(status, "reading " + where))
    return err;
  bool last = index + 1 == info.chunk_count;
  auto expected = last ? info.size_bytes - index * uint64_t{info.chunk_bytes}
                       : uint64_t{info.chunk_bytes};
  if (out.size() != expected)
    return caf::make_error(ec::corrupt, "model " + id + " is corrupt: "
                                          + where + " has "
                                          + std::to_string(out.size())
                                          + " bytes, expected "
                                          + std::to_string(expected));
  return out;
}

// Deletes all chunks of `id` and its pending marker in one batch.
caf::error erase_chunks(database::impl& db, const std::string& id,
                        bool with_meta) {
  rocksdb::WriteBatch batch;
  auto [begin, end] = chunk_range(id);
  auto st = batch.DeleteRange(db.handle(cf::model_chunks), begin, end);
  if (st.ok())
    st = batch.Delete(db.handle(cf::model_pending), id);
  if (st.ok() && with_meta)
    st = batch.Delete(db.handle(cf::model_meta), id);
  if (st.ok()) {
    rocksdb::WriteOptions wo;
    wo.sync = with_meta;
    st = db.db->Write(wo, &batch);
  }
  return to_error(st, "deleting model " + id);
}

struct xxh_state_deleter {
  void operator()(XXH3_state_t* p) const {
    XXH3_freeState(p);
  }
};

using xxh_ptr = std::unique_ptr<XXH3_state_t, xxh_state_deleter>;

xxh_ptr make_hasher() {
  xxh_ptr h{XXH3_createState()};
  XXH3_64bits_reset(h.get());
  return h;
}

} // namespace

caf::error validate_model_id(const std::string& model_id) {
  if (model_id.empty())
    return caf::make_error(ec::invalid_argument, "model id is empty");
  if (model_id.size() > 256)
    return caf::make_error(ec::invalid_argument,
                           "model id is longer than 256 bytes: "
                             + model_id.substr(0, 64) + "...");
  for (unsigned char c : model_id)
    if (c < 0x20 || c == 0x7f)
      return caf::make_error(ec::invalid_argument,
                             "model id contains a control character: "
                               + model_id);
  return caf::none;
}

// -- model_writer -------------------------------------------------------------

namespace {

/// Chunks past this many bytes of one model bypass the memtable: they go
/// straight into an SST file of their own, which commit syncs and ingests
/// (moves) into the chunk column family before the synced metadata write.
/// That writes each byte once (no WAL, no memtable, no flush) and copies it
/// twice fewer times. Small models (client updates, aggregates) stay on
/// the memtable and the WAL, and commit without file ingestion.
constexpr uint64_t direct_after_bytes = uint64_t{16} << 20;

/// The folder, inside the database folder, of the SST files of writes in
/// progress; emptied when the store opens.
constexpr const char* upload_folder = "model-uploads";

/// Names the SST files of writers (unique within the process; one process
/// holds the database).
std::atomic<uint64_t> upload_counter{0};

} // namespace

struct model_writer::state {
  std::shared_ptr<model_store> store;
  std::string id;
  uint32_t chunk_bytes = 0;
  std::string buf;
  uint64_t next_chunk = 0;
  xxh_ptr hasher = make_hasher();
  bool finished = false;
  /// Chunks past `direct_after_bytes` of the model, written straight into
  /// an SST file (`sst_path`) that commit ingests; null until the first.
  std::unique_ptr<rocksdb::SstFileWriter> sst;
  std::string sst_path;

  /// Creates the SST file for the chunks to come. Chunk keys of one model
  /// ascend, as an SST file needs them to.
  rocksdb::Status open_sst(database::impl& db) {
    auto options = db.db->GetOptions(db.handle(cf::model_chunks));
    rocksdb::EnvOptions env_options{options};
    // Start write-back as the file grows, so that the sync at commit has
    // little left to do.
    env_options.bytes_per_sync = 8 << 20;
    // Keep the pages cached: a new model is often read back soon.
    sst = std::make_unique<rocksdb::SstFileWriter>(
      env_options, options, db.handle(cf::model_chunks),
      /*invalidate_page_cache=*/false);
    sst_path = (std::filesystem::path{db.path} / upload_folder
                / (std::to_string(++upload_counter) + ".sst"))
                 .string();
    return sst->Open(sst_path);
  }

  /// Drops the SST file (unfinished or not ingested). Best effort.
  void drop_sst() {
    // Destroying an unfinished writer abandons its table builder.
    sst.reset();
    if (!sst_path.empty()) {
      std::error_code ignored;
      std::filesystem::remove(sst_path, ignored);
      sst_path.clear();
    }
  }
};

model_writer::model_writer(std::unique_ptr<state> st) : st_(std::move(st)) {
  st_->buf.reserve(st_->chunk_bytes);
}

model_writer::~model_writer() {
  abort();
}

void model_writer::flush_chunk(std::string_view bytes, caf::error& err) {
  auto& db = st_->store->db().get();
  auto key = chunk_key(st_->id, st_->next_chunk);
  rocksdb::Slice value{bytes.data(), bytes.size()};
  rocksdb::Status status;
  if (!st_->sst && st_->next_chunk * st_->chunk_bytes >= direct_after_bytes)
    status = st_->open_sst(db);
  if (status.ok() && st_->sst)
    status = st_->sst->Put(key, value);
  else if (status.ok())
    status = db.db->Put(rocksdb::WriteOptions{}, db.handle(cf::model_chunks),
                        key, value);
  if (auto e = to_error(status, "writing chunk "
                                  + std::to_string(st_->next_chunk)
                                  + " of model " + st_->id)) {
    err = std::move(e);
    return;
  }
  ++st_->next_chunk;
}

caf::error model_writer::write(std::string_view bytes) {
  if (st_->finished)
    return caf::make_error(ec::invalid_state,
                           "model " + st_->id + " is already committed or "
                                                "aborted");
  XXH3_64bits_update(st_->hasher.get(), bytes.data(), bytes.size());
  size_ += bytes.size();
  auto& buf = st_->buf;
  size_t chunk = st_->chunk_bytes;
  while (!bytes.empty()) {
    caf::error err;
    if (buf.empty() && bytes.size() >= chunk) {
      // A whole chunk at a chunk boundary goes to the store as it is, without
      // the copy into the buffer (FEDn clients send exactly one chunk per
      // message).
      flush_chunk(bytes.substr(0, chunk), err);
      bytes.remove_prefix(chunk);
    } else {
      auto n = std::min<size_t>(chunk - buf.size(), bytes.size());
      buf.append(bytes.data(), n);
      bytes.remove_prefix(n);
      if (buf.size() == chunk) {
        flush_chunk(buf, err);
        buf.clear();
      }
    }
    if (err) {
      abort();
      return err;
    }
  }
  return caf::none;
}

caf::expected<model_info> model_writer::commit() {
  if (st_->finished)
    return caf::make_error(ec::invalid_state,
                           "model " + st_->id + " is already committed or "
                                                "aborted");
  if (!st_->buf.empty()) {
    caf::error err;
    flush_chunk(st_->buf, err);
    if (err) {
      abort();
      return err;
    }
  }
  auto meta = make_meta(st_->id, size_, st_->chunk_bytes, st_->next_chunk,
                        XXH3_64bits_digest(st_->hasher.get()));
  auto& db = st_->store->db().get();
  if (st_->sst) {
    // Finish syncs the file; ingestion links it into the database, syncs
    // the folder and records it in the (synced) MANIFEST. Its keys follow
    // the model's first chunks in the memtable, so no flush is needed.
    auto status = st_->sst->Finish();
    st_->sst.reset();
    if (status.ok()) {
      rocksdb::IngestExternalFileOptions io;
      io.move_files = true;
      io.write_global_seqno = false;
      status = db.db->IngestExternalFile(db.handle(cf::model_chunks),
                                         {st_->sst_path}, io);
    }
    if (auto err = to_error(status, "storing the chunks of model "
                                      + st_->id)) {
      abort();
      return err;
    }
    // Ingestion moved the file: nothing to delete any more.
    st_->sst_path.clear();
  }
  rocksdb::WriteBatch batch;
  auto status = batch.Put(db.handle(cf::model_meta), st_->id,
                          meta.SerializeAsString());
  if (status.ok())
    status = batch.Delete(db.handle(cf::model_pending), st_->id);
  if (status.ok()) {
    rocksdb::WriteOptions wo;
    wo.sync = true; // A committed model survives a crash.
    status = db.db->Write(wo, &batch);
  }
  if (auto err = to_error(status, "committing model " + st_->id)) {
    abort();
    return err;
  }
  st_->finished = true;
  st_->store->release(st_->id);
  return to_info(meta);
}

void model_writer::abort() {
  if (!st_ || st_->finished)
    return;
  st_->finished = true;
  st_->drop_sst();
  // Best effort: whatever stays behind is removed on the next open.
  static_cast<void>(erase_chunks(st_->store->db().get(), st_->id, false));
  st_->store->release(st_->id);
}

// -- model_reader -------------------------------------------------------------

struct model_reader::state {
  std::shared_ptr<database> db;
  model_info info;
  uint64_t next_chunk = 0;
  uint64_t bytes_read = 0;
  xxh_ptr hasher = make_hasher();
};

model_reader::model_reader(std::unique_ptr<state> st) : st_(std::move(st)) {
}

model_reader::~model_reader() = default;
model_reader::model_reader(model_reader&&) noexcept = default;
model_reader& model_reader::operator=(model_reader&&) noexcept = default;

const model_info& model_reader::info() const {
  return st_->info;
}

caf::expected<bool> model_reader::next(std::string& out) {
  auto& s = *st_;
  auto& id = s.info.model_id;
  if (s.next_chunk == s.info.chunk_count) {
    if (s.bytes_read != s.info.size_bytes)
      return caf::make_error(ec::corrupt,
                             "model " + id + " is corrupt: read "
                               + std::to_string(s.bytes_read)
                               + " bytes, expected "
                               + std::to_string(s.info.size_bytes));
    if (XXH3_64bits_digest(s.hasher.get()) != s.info.checksum)
      return caf::make_error(ec::corrupt, "model " + id
                                            + " is corrupt: checksum "
                                              "mismatch");
    out.clear();
    return false;
  }
  auto chunk = get_chunk(s.db->get(), s.info, s.next_chunk);
  if (!chunk)
    return chunk.error();
  out = std::move(*chunk);
  XXH3_64bits_update(s.hasher.get(), out.data(), out.size());
  s.bytes_read += out.size();
  ++s.next_chunk;
  return true;
}

// -- model_store --------------------------------------------------------------

model_store::model_store(std::shared_ptr<database> db, uint32_t chunk_bytes)
  : db_(std::move(db)), chunk_bytes_(chunk_bytes) {
}

caf::expected<std::shared_ptr<model_store>>
model_store::open(std::shared_ptr<database> db, uint32_t chunk_bytes) {
  if (!db)
    return caf::make_error(ec::invalid_argument, "model store needs a "
                                                 "database");
  if (chunk_bytes == 0)
    return caf::make_error(ec::invalid_argument,
                           "model store chunk size must be > 0");
  std::shared_ptr<model_store> store{new model_store(db, chunk_bytes)};
  auto& impl = db->get();
  // SST files of writes a crash interrupted (never ingested) go; the folder
  // is there for the writers to come.
  {
    auto folder = std::filesystem::path{impl.path} / upload_folder;
    std::error_code fs_err;
    std::filesystem::remove_all(folder, fs_err);
    if (!fs_err)
      std::filesystem::create_directories(folder, fs_err);
    if (fs_err)
      return caf::make_error(ec::storage_error,
                             "cannot prepare " + folder.string() + ": "
                               + fs_err.message());
  }
  std::vector<std::string> interrupted;
  {
    std::unique_ptr<rocksdb::Iterator> it{
      impl.db->NewIterator(rocksdb::ReadOptions{},
                           impl.handle(cf::model_pending))};
    for (it->SeekToFirst(); it->Valid(); it->Next())
      interrupted.push_back(it->key().ToString());
    if (auto err = to_error(it->status(), "scanning pending model writes"))
      return err;
  }
  for (auto& id : interrupted) {
    auto meta = read_meta(impl, id);
    if (!meta)
      return meta.error();
    // A pending marker next to committed metadata cannot happen (commit
    // removes the marker in the same batch); keep the model if it does.
    if (*meta) {
      auto st = impl.db->Delete(rocksdb::WriteOptions{},
                                impl.handle(cf::model_pending), id);
      if (auto err = to_error(st, "clearing pending marker of " + id))
        return err;
      continue;
    }
    if (auto err = erase_chunks(impl, id, false))
      return err;
    ++store->recovered_;
  }
  return store;
}

caf::error model_store::reserve(const std::string& model_id) {
  if (auto err = validate_model_id(model_id))
    return err;
  std::lock_guard<std::mutex> guard{mtx_};
  if (writing_.count(model_id) > 0)
    return caf::make_error(ec::already_exists,
                           "model " + model_id + " is being written");
  auto meta = read_meta(db_->get(), model_id);
  if (!meta)
    return meta.error();
  if (*meta)
    return caf::make_error(ec::already_exists,
                           "model " + model_id + " already exists");
  writing_.insert(model_id);
  return caf::none;
}

void model_store::release(const std::string& model_id) {
  std::lock_guard<std::mutex> guard{mtx_};
  writing_.erase(model_id);
}

caf::expected<std::unique_ptr<model_writer>>
model_store::begin_write(const std::string& model_id) {
  if (auto err = reserve(model_id))
    return err;
  auto& impl = db_->get();
  auto st = impl.db->Put(rocksdb::WriteOptions{},
                         impl.handle(cf::model_pending), model_id, "");
  if (auto err = to_error(st, "starting write of model " + model_id)) {
    release(model_id);
    return err;
  }
  auto state = std::make_unique<model_writer::state>();
  // The writer keeps the store alive; stores are always owned by shared_ptr.
  state->store = shared_from_this();
  state->id = model_id;
  state->chunk_bytes = chunk_bytes_;
  return std::unique_ptr<model_writer>{new model_writer(std::move(state))};
}

caf::expected<model_info> model_store::put(const std::string& model_id,
                                           std::string_view bytes) {
  if (bytes.size() <= single_batch_max_bytes)
    return put_batch(model_id, bytes);
  auto writer = begin_write(model_id);
  if (!writer)
    return writer.error();
  if (auto err = (*writer)->write(bytes))
    return err;
  return (*writer)->commit();
}

// One synced WriteBatch instead of the writer's pending marker, chunk
// writes and synced metadata commit: one WAL record and one sync.
caf::expected<model_info> model_store::put_batch(const std::string& model_id,
                                                 std::string_view bytes) {
  if (auto err = reserve(model_id))
    return err;
  auto& impl = db_->get();
  uint64_t chunks = (bytes.size() + chunk_bytes_ - 1) / chunk_bytes_;
  auto meta = make_meta(model_id, bytes.size(), chunk_bytes_, chunks,
                        XXH3_64bits(bytes.data(), bytes.size()));
  auto value = meta.SerializeAsString();
  // Room for every key and value plus per-record framing.
  rocksdb::WriteBatch batch{bytes.size() + value.size()
                            + (chunks + 1) * (model_id.size() + 32)};
  rocksdb::Status status;
  for (uint64_t i = 0; status.ok() && i < chunks; ++i) {
    auto at = i * chunk_bytes_;
    auto n = std::min<uint64_t>(chunk_bytes_, bytes.size() - at);
    status = batch.Put(impl.handle(cf::model_chunks), chunk_key(model_id, i),
                       rocksdb::Slice{bytes.data() + at, n});
  }
  if (status.ok())
    status = batch.Put(impl.handle(cf::model_meta), model_id, value);
  if (status.ok()) {
    rocksdb::WriteOptions wo;
    wo.sync = true; // A committed model survives a crash.
    status = impl.db->Write(wo, &batch);
  }
  release(model_id);
  if (auto err = to_error(status, "committing model " + model_id))
    return err;
  return to_info(meta);
}

caf::expected<model_reader>
model_store::open_read(const std::string& model_id) {
  if (auto err = validate_model_id(model_id))
    return err;
  auto meta = read_meta(db_->get(), model_id);
  if (!meta)
    return meta.error();
  if (!*meta)
    return caf::make_error(ec::not_found, "model " + model_id
                                            + " does not exist");
  auto state = std::make_unique<model_reader::state>();
  state->db = db_;
  state->info = to_info(**meta);
  return model_reader{std::move(state)};
}

caf::expected<std::string> model_store::get(const std::string& model_id) {
  auto reader = open_read(model_id);
  if (!reader)
    return reader.error();
  std::string result;
  result.reserve(reader->info().size_bytes);
  std::string chunk;
  for (;;) {
    auto more = reader->next(chunk);
    if (!more)
      return more.error();
    if (!*more)
      return result;
    result += chunk;
  }
}

caf::expected<std::string> model_store::read_chunk(const std::string& model_id,
                                                  uint64_t index) {
  auto meta = info(model_id);
  if (!meta)
    return meta.error();
  if (index >= meta->chunk_count)
    return caf::make_error(ec::invalid_argument,
                           "model " + model_id + " has "
                             + std::to_string(meta->chunk_count)
                             + " chunks, no chunk " + std::to_string(index));
  return get_chunk(db_->get(), *meta, index);
}

caf::expected<model_info> model_store::info(const std::string& model_id) {
  if (auto err = validate_model_id(model_id))
    return err;
  auto meta = read_meta(db_->get(), model_id);
  if (!meta)
    return meta.error();
  if (!*meta)
    return caf::make_error(ec::not_found, "model " + model_id
                                            + " does not exist");
  return to_info(**meta);
}

caf::expected<bool> model_store::exists(const std::string& model_id) {
  if (auto err = validate_model_id(model_id))
    return err;
  auto meta = read_meta(db_->get(), model_id);
  if (!meta)
    return meta.error();
  return meta->has_value();
}

caf::error model_store::remove(const std::string& model_id) {
  if (auto err = validate_model_id(model_id))
    return err;
  std::lock_guard<std::mutex> guard{mtx_};
  auto meta = read_meta(db_->get(), model_id);
  if (!meta)
    return meta.error();
  if (!*meta)
    return caf::make_error(ec::not_found, "model " + model_id
                                            + " does not exist");
  return erase_chunks(db_->get(), model_id, true);
}

caf::expected<size_t>
model_store::remove_many(const std::vector<std::string>& ids) {
  std::lock_guard<std::mutex> guard{mtx_};
  auto& impl = db_->get();
  rocksdb::WriteBatch batch;
  size_t n = 0;
  for (auto& id : ids) {
    if (validate_model_id(id))
      continue;
    auto meta = read_meta(impl, id);
    if (!meta)
      return meta.error();
    if (!*meta)
      continue;
    auto [begin, end] = chunk_range(id);
    auto st = batch.DeleteRange(impl.handle(cf::model_chunks), begin, end);
    if (st.ok())
      st = batch.Delete(impl.handle(cf::model_meta), id);
    if (auto err = to_error(st, "deleting model " + id))
      return err;
    ++n;
  }
  if (n == 0)
    return n;
  rocksdb::WriteOptions wo;
  wo.sync = true;
  if (auto err = to_error(impl.db->Write(wo, &batch), "deleting models"))
    return err;
  return n;
}

caf::expected<std::vector<model_info>> model_store::list() {
  auto& impl = db_->get();
  std::vector<model_info> result;
  std::unique_ptr<rocksdb::Iterator> it{
    impl.db->NewIterator(rocksdb::ReadOptions{}, impl.handle(cf::model_meta))};
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    rondo::store::ModelMeta meta;
    if (!meta.ParseFromArray(it->value().data(),
                             static_cast<int>(it->value().size())))
      return caf::make_error(ec::corrupt, "metadata of model "
                                            + it->key().ToString()
                                            + " is corrupt");
    result.push_back(to_info(meta));
  }
  if (auto err = to_error(it->status(), "listing models"))
    return err;
  return result;
}

} // namespace rondo::storage
