#include "storage/model_store.hpp"

#include "messages/error.hpp"
#include "messages/ids.hpp"
#include "records.pb.h"
#include "storage/database_impl.hpp"
#include "storage/model_file.hpp"
#include "storage/update_cache.hpp"
#include "model/npz.hpp"

#include <rocksdb/write_batch.h>
#include <xxhash.h>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <random>
#include <system_error>
#include <unordered_set>

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

/// The folder, inside the database folder, of models past
/// `direct_after_bytes`: one file each, named in the model's metadata.
constexpr const char* files_folder = "model-files";

/// Size of chunk `index` of a model: `chunk_bytes`, but the last one's.
uint64_t chunk_size(const rondo::store::ModelMeta& meta, uint64_t index) {
  bool last = index + 1 == meta.chunk_count();
  return last ? meta.size_bytes() - index * uint64_t{meta.chunk_bytes()}
              : uint64_t{meta.chunk_bytes()};
}

/// Opens a model's file for reading chunk by chunk; `pool` fetches ahead
/// (null: random access). @returns `ec::corrupt` naming the model if the
/// file is missing, `ec::storage_error` otherwise.
caf::expected<std::unique_ptr<detail::direct_file_reader>>
open_model_file(detail::io_pool* pool, const std::string& folder,
                const rondo::store::ModelMeta& meta) {
  auto& id = meta.model_id();
  if (static_cast<uint64_t>(meta.chunk_xxh3_size()) != meta.chunk_count())
    return caf::make_error(ec::corrupt,
                           "metadata of model " + id + " is corrupt: "
                             + std::to_string(meta.chunk_xxh3_size())
                             + " chunk checksums for "
                             + std::to_string(meta.chunk_count())
                             + " chunks");
  auto path = folder + "/" + meta.file();
  auto file = detail::direct_file_reader::open(pool, path, meta.size_bytes(),
                                               meta.chunk_bytes());
  if (!file && file.error() == ec::not_found)
    return caf::make_error(ec::corrupt, "model " + id
                                          + " is corrupt: its file " + path
                                          + " is missing");
  if (!file)
    return caf::make_error(ec::storage_error,
                           "model " + id + ": " + error_detail(file.error()));
  return file;
}

/// Reads chunk `index` of a file-held model and checks it against its
/// recorded XXH3-64.
caf::expected<std::string> get_file_chunk(detail::direct_file_reader& file,
                                          const rondo::store::ModelMeta& meta,
                                          uint64_t index) {
  auto& id = meta.model_id();
  std::string out;
  if (auto err = file.read(index, out))
    return with_prefix(err, "model " + id
                              + (err == ec::corrupt ? " is corrupt: " : ": "));
  if (XXH3_64bits(out.data(), out.size())
      != meta.chunk_xxh3(static_cast<int>(index)))
    return caf::make_error(ec::corrupt, "model " + id + " is corrupt: chunk "
                                          + std::to_string(index)
                                          + ": checksum mismatch");
  return out;
}

// Reads one chunk of a model held as chunks in RocksDB.
caf::expected<std::string> get_chunk(database::impl& db,
                                     const rondo::store::ModelMeta& meta,
                                     uint64_t index) {
  auto& id = meta.model_id();
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
  auto expected = chunk_size(meta, index);
  if (out.size() != expected)
    return caf::make_error(ec::corrupt, "model " + id + " is corrupt: "
                                          + where + " has "
                                          + std::to_string(out.size())
                                          + " bytes, expected "
                                          + std::to_string(expected));
  return out;
}

// Deletes all chunks of the uncommitted write of `id` and its pending
// marker in one batch.
caf::error erase_chunks(database::impl& db, const std::string& id) {
  rocksdb::WriteBatch batch;
  auto [begin, end] = chunk_range(id);
  auto st = batch.DeleteRange(db.handle(cf::model_chunks), begin, end);
  if (st.ok())
    st = batch.Delete(db.handle(cf::model_pending), id);
  if (st.ok())
    st = db.db->Write(rocksdb::WriteOptions{}, &batch);
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

/// Models past this many bytes are held as a file of their own in
/// `files_folder`, written with O_DIRECT (detail::direct_file_writer): each
/// byte is copied once on the caller's thread and written once, without
/// WAL, memtable, compaction or page cache. Smaller models (client updates
/// of small networks, aggregates) stay chunks in RocksDB, where `put` is
/// one synced batch.
constexpr uint64_t direct_after_bytes = uint64_t{16} << 20;

/// The folder of the SST files that earlier versions wrote large uploads
/// into before ingesting them; removed on open.
constexpr const char* old_upload_folder = "model-uploads";

/// Threads writing and reading model files, per store: each file's writes
/// run in order on one of them at a time, so this many files are written at
/// once; reads fetch ahead on them too.
constexpr size_t io_threads = 4;

/// A new file name for `files_folder`: 16 random hex digits.
std::string new_file_name() {
  thread_local std::mt19937_64 gen{std::random_device{}()};
  char name[32];
  std::snprintf(name, sizeof(name), "%016llx.model",
                static_cast<unsigned long long>(gen()));
  return name;
}

} // namespace

struct model_writer::state {
  std::shared_ptr<model_store> store;
  std::string id;
  uint32_t chunk_bytes = 0;
  /// Bytes of a partial chunk (RocksDB-held models only).
  std::string buf;
  /// Chunks written to RocksDB.
  uint64_t next_chunk = 0;
  xxh_ptr hasher = make_hasher();
  bool finished = false;
  durability mode = durability::synced;
  /// Once the model passes direct_after_bytes: its file and the file's
  /// name; the XXH3-64 of each complete chunk; the hash of the chunk being
  /// filled and its bytes so far.
  std::unique_ptr<detail::direct_file_writer> file;
  std::string file_name;
  std::vector<uint64_t> chunk_sums;
  xxh_ptr chunk_hasher;
  uint64_t chunk_fill = 0;

  /// Appends to the file, hashing chunk by chunk.
  caf::error append_file(std::string_view bytes) {
    for (auto rest = bytes; !rest.empty();) {
      auto n = std::min<uint64_t>(chunk_bytes - chunk_fill, rest.size());
      XXH3_64bits_update(chunk_hasher.get(), rest.data(), n);
      chunk_fill += n;
      rest.remove_prefix(n);
      if (chunk_fill == chunk_bytes) {
        chunk_sums.push_back(XXH3_64bits_digest(chunk_hasher.get()));
        XXH3_64bits_reset(chunk_hasher.get());
        chunk_fill = 0;
      }
    }
    return file->append(bytes);
  }
};

model_writer::model_writer(std::unique_ptr<state> st) : st_(std::move(st)) {
}

model_writer::~model_writer() {
  abort();
}

void model_writer::flush_chunk(std::string_view bytes, caf::error& err) {
  auto& db = st_->store->db().get();
  auto status = db.db->Put(rocksdb::WriteOptions{},
                           db.handle(cf::model_chunks),
                           chunk_key(st_->id, st_->next_chunk),
                           rocksdb::Slice{bytes.data(), bytes.size()});
  if (auto e = to_error(status, "writing chunk "
                                  + std::to_string(st_->next_chunk)
                                  + " of model " + st_->id)) {
    err = std::move(e);
    return;
  }
  ++st_->next_chunk;
}

caf::error model_writer::move_to_file() {
  auto& s = *st_;
  auto& store = *s.store;
  for (int attempt = 0;; ++attempt) {
    s.file_name = new_file_name();
    auto f = detail::direct_file_writer::create(*store.io_,
                                                store.files_path_ + "/"
                                                  + s.file_name);
    if (f) {
      s.file = std::move(*f);
      break;
    }
    // 64 random bits collide only by bad luck: try another name.
    if (f.error() != ec::already_exists || attempt == 3)
      return f.error();
  }
  s.chunk_hasher = make_hasher();
  // The chunks already in RocksDB are copied to the file; commit deletes
  // them in its batch.
  auto& db = store.db().get();
  rocksdb::ReadOptions ro;
  ro.verify_checksums = true;
  std::string chunk;
  for (uint64_t i = 0; i < s.next_chunk; ++i) {
    auto status = db.db->Get(ro, db.handle(cf::model_chunks),
                             chunk_key(s.id, i), &chunk);
    if (auto err = to_error(status, "moving chunk " + std::to_string(i)
                                      + " of model " + s.id
                                      + " to its file"))
      return err;
    if (auto err = s.append_file(chunk))
      return err;
  }
  if (!s.buf.empty()) {
    if (auto err = s.append_file(s.buf))
      return err;
    s.buf.clear();
  }
  s.buf.shrink_to_fit();
  return caf::none;
}

bool model_writer::wait_for_room(size_t n, std::function<void()> fn) {
  if (st_->finished || !st_->file)
    return false;
  return st_->file->wait_for_room(n, std::move(fn));
}

caf::error model_writer::write(std::string_view bytes) {
  if (st_->finished)
    return caf::make_error(ec::invalid_state,
                           "model " + st_->id + " is already committed or "
                                                "aborted");
  if (!st_->file && size_ + bytes.size() > direct_after_bytes)
    if (auto err = move_to_file()) {
      abort();
      return err;
    }
  XXH3_64bits_update(st_->hasher.get(), bytes.data(), bytes.size());
  size_ += bytes.size();
  if (st_->file) {
    if (auto err = st_->append_file(bytes)) {
      abort();
      return err;
    }
    return caf::none;
  }
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
  auto& s = *st_;
  if (s.finished)
    return caf::make_error(ec::invalid_state,
                           "model " + s.id + " is already committed or "
                                             "aborted");
  auto fail = [this](caf::error err) {
    abort();
    return err;
  };
  rondo::store::ModelMeta meta;
  if (s.file) {
    if (s.chunk_fill > 0)
      s.chunk_sums.push_back(XXH3_64bits_digest(s.chunk_hasher.get()));
    // The file is durable (synced, and its name in its folder) before the
    // metadata that makes it visible.
    if (auto err = s.file->finish(s.mode == durability::synced))
      return fail(std::move(err));
    meta = make_meta(s.id, size_, s.chunk_bytes, s.chunk_sums.size(),
                     XXH3_64bits_digest(s.hasher.get()));
    meta.set_file(s.file_name);
    meta.mutable_chunk_xxh3()->Add(s.chunk_sums.begin(), s.chunk_sums.end());
  } else {
    if (!s.buf.empty()) {
      caf::error err;
      flush_chunk(s.buf, err);
      if (err)
        return fail(std::move(err));
    }
    meta = make_meta(s.id, size_, s.chunk_bytes, s.next_chunk,
                     XXH3_64bits_digest(s.hasher.get()));
  }
  auto& db = s.store->db().get();
  rocksdb::WriteBatch batch;
  auto status = batch.Put(db.handle(cf::model_meta), s.id,
                          meta.SerializeAsString());
  if (status.ok())
    status = batch.Delete(db.handle(cf::model_pending), s.id);
  if (status.ok() && s.file && s.next_chunk > 0) {
    // The chunks written before the model moved to its file.
    auto [begin, end] = chunk_range(s.id);
    status = batch.DeleteRange(db.handle(cf::model_chunks), begin, end);
  }
  if (status.ok()) {
    rocksdb::WriteOptions wo;
    // Synced: a committed model survives an OS crash.
    wo.sync = s.mode == durability::synced;
    status = db.db->Write(wo, &batch);
  }
  if (auto err = to_error(status, "committing model " + s.id))
    return fail(std::move(err));
  s.finished = true;
  // Finished: the file stays.
  s.file.reset();
  s.store->release(s.id);
  return to_info(meta);
}

void model_writer::abort() {
  if (!st_ || st_->finished)
    return;
  st_->finished = true;
  if (st_->file) {
    st_->file->discard();
    st_->file.reset();
  }
  // Best effort: whatever stays behind is removed on the next open.
  static_cast<void>(erase_chunks(st_->store->db().get(), st_->id));
  st_->store->release(st_->id);
}

// -- model_reader -------------------------------------------------------------

struct model_reader::state {
  /// Keeps the database and the I/O threads alive.
  std::shared_ptr<model_store> store;
  rondo::store::ModelMeta meta;
  model_info info;
  /// The model's file, if it is held as one (opened by open_read, so a
  /// model removed while being read stays readable to the end).
  std::unique_ptr<detail::direct_file_reader> file;
  uint64_t next_chunk = 0;
  uint64_t bytes_read = 0;
  xxh_ptr hasher = make_hasher();
};

model_reader::model_reader(std::unique_ptr<state> st) : st_(std::move(st)) {
}

model_reader::~model_reader() = default;
model_reader::model_reader(model_reader&&) noexcept = default;
model_reader& model_reader::operator=(model_reader&&) noexcept = default;

caf::error model_reader::for_each(
  const std::function<caf::error(std::string_view)>& sink) {
  std::string chunk;
  for (;;) {
    auto more = next(chunk);
    if (!more)
      return more.error();
    if (!*more)
      return caf::none;
    if (auto err = sink(chunk))
      return err;
  }
}

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
  auto chunk = s.file ? get_file_chunk(*s.file, s.meta, s.next_chunk)
                      : get_chunk(s.store->db().get(), s.meta, s.next_chunk);
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
  : db_(std::move(db)), chunk_bytes_(chunk_bytes),
    files_path_(
      (std::filesystem::path{db_->get().path} / files_folder).string()) {
}

model_store::~model_store() = default;

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
  // SST files that an earlier version's interrupted writes left go; the
  // folder of model files is there for the writers to come.
  {
    std::error_code fs_err;
    std::filesystem::remove_all(std::filesystem::path{impl.path}
                                  / old_upload_folder,
                                fs_err);
    if (!fs_err)
      std::filesystem::create_directories(store->files_path_, fs_err);
    if (fs_err)
      return caf::make_error(ec::storage_error,
                             "cannot prepare " + store->files_path_ + ": "
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
    if (auto err = erase_chunks(impl, id))
      return err;
    ++store->recovered_;
  }
  if (auto err = store->remove_orphan_files())
    return err;
  store->io_ = std::make_unique<detail::io_pool>(io_threads);
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
model_store::begin_write(const std::string& model_id, durability mode) {
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
  state->mode = mode;
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

caf::expected<rondo::store::ModelMeta>
model_store::committed_meta(const std::string& model_id) {
  if (auto err = validate_model_id(model_id))
    return err;
  auto meta = read_meta(db_->get(), model_id);
  if (!meta)
    return meta.error();
  if (!*meta && updates_ && !promote(model_id)) {
    meta = read_meta(db_->get(), model_id);
    if (!meta)
      return meta.error();
  }
  if (!*meta)
    return caf::make_error(ec::not_found, "model " + model_id
                                            + " does not exist");
  return std::move(**meta);
}

caf::error model_store::promote(const std::string& model_id) {
  auto held = updates_->find(model_id);
  if (!held)
    return held.error();
  auto m = (*held)->to_model();
  if (!m)
    return m.error();
  auto bytes = write_npz_bytes(*m);
  if (!bytes)
    return bytes.error();
  auto info = put(model_id, *bytes);
  // Another reader may have promoted it meanwhile: then it is stored too.
  if (!info && info.error() != ec::already_exists)
    return info.error();
  updates_->remove(model_id);
  return caf::none;
}

caf::error model_store::keep(const std::string& model_id) {
  if (auto err = validate_model_id(model_id))
    return err;
  auto meta = read_meta(db_->get(), model_id);
  if (!meta)
    return meta.error();
  if (*meta)
    return caf::none;
  if (!updates_)
    return caf::make_error(ec::not_found, "model " + model_id
                                            + " does not exist");
  return promote(model_id);
}

caf::error model_store::remove_orphan_files() {
  std::vector<std::filesystem::path> present;
  std::error_code fs_err;
  for (std::filesystem::directory_iterator it{files_path_, fs_err}, end;
       !fs_err && it != end; it.increment(fs_err))
    present.push_back(it->path());
  if (fs_err)
    return caf::make_error(ec::storage_error, "cannot list " + files_path_
                                                + ": " + fs_err.message());
  if (present.empty())
    return caf::none;
  std::unordered_set<std::string> referenced;
  auto& impl = db_->get();
  std::unique_ptr<rocksdb::Iterator> it{
    impl.db->NewIterator(rocksdb::ReadOptions{}, impl.handle(cf::model_meta))};
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    rondo::store::ModelMeta meta;
    if (meta.ParseFromArray(it->value().data(),
                            static_cast<int>(it->value().size()))
        && !meta.file().empty())
      referenced.insert(meta.file());
  }
  if (auto err = to_error(it->status(), "scanning model metadata"))
    return err;
  for (auto& path : present)
    if (referenced.count(path.filename().string()) == 0) {
      // A write a crash interrupted, or a removal that a crash cut short
      // between deleting the metadata and the file.
      std::filesystem::remove(path, fs_err);
      if (fs_err)
        return caf::make_error(ec::storage_error,
                               "cannot remove " + path.string() + ": "
                                 + fs_err.message());
      ++orphans_removed_;
    }
  return caf::none;
}

void model_store::remove_files(const std::vector<std::string>& names) {
  // Best effort: a file that stays is an orphan, removed on the next open.
  for (auto& name : names)
    ::unlink((files_path_ + "/" + name).c_str());
}

caf::expected<model_reader>
model_store::open_read(const std::string& model_id) {
  auto meta = committed_meta(model_id);
  if (!meta)
    return meta.error();
  auto state = std::make_unique<model_reader::state>();
  if (!meta->file().empty()) {
    auto file = open_model_file(io_.get(), files_path_, *meta);
    if (!file)
      return file.error();
    state->file = std::move(*file);
  }
  state->store = shared_from_this();
  state->info = to_info(*meta);
  state->meta = std::move(*meta);
  return model_reader{std::move(state)};
}

caf::expected<std::string> model_store::get(const std::string& model_id) {
  auto reader = open_read(model_id);
  if (!reader)
    return reader.error();
  std::string result;
  result.reserve(reader->info().size_bytes);
  if (auto err = reader->for_each([&result](std::string_view chunk) {
        result += chunk;
        return caf::error{};
      }))
    return err;
  return result;
}

caf::expected<std::string> model_store::read_chunk(const std::string& model_id,
                                                  uint64_t index) {
  auto meta = committed_meta(model_id);
  if (!meta)
    return meta.error();
  if (index >= meta->chunk_count())
    return caf::make_error(ec::invalid_argument,
                           "model " + model_id + " has "
                             + std::to_string(meta->chunk_count())
                             + " chunks, no chunk " + std::to_string(index));
  if (meta->file().empty())
    return get_chunk(db_->get(), *meta, index);
  auto file = open_model_file(nullptr, files_path_, *meta);
  if (!file)
    return file.error();
  return get_file_chunk(**file, *meta, index);
}

caf::expected<model_info> model_store::info(const std::string& model_id) {
  auto meta = committed_meta(model_id);
  if (!meta)
    return meta.error();
  return to_info(*meta);
}

caf::expected<bool> model_store::exists(const std::string& model_id) {
  if (auto err = validate_model_id(model_id))
    return err;
  auto meta = read_meta(db_->get(), model_id);
  if (!meta)
    return meta.error();
  if (!*meta && updates_)
    return updates_->holds(model_id);
  return meta->has_value();
}

caf::error model_store::remove(const std::string& model_id) {
  if (auto err = validate_model_id(model_id))
    return err;
  auto n = remove_many({model_id});
  if (!n)
    return n.error();
  if (*n == 0)
    return caf::make_error(ec::not_found, "model " + model_id
                                            + " does not exist");
  return caf::none;
}

caf::expected<size_t>
model_store::remove_many(const std::vector<std::string>& ids) {
  size_t n = 0;
  if (updates_)
    for (auto& id : ids)
      n += updates_->remove(id) ? 1 : 0;
  std::unique_lock<std::mutex> guard{mtx_};
  auto& impl = db_->get();
  rocksdb::WriteBatch batch;
  size_t cached = n;
  std::vector<std::string> files;
  // The smallest and largest chunk keys deleted: one compaction of that
  // span gives their disk space back.
  std::string low;
  std::string high;
  for (auto& id : ids) {
    if (validate_model_id(id))
      continue;
    auto meta = read_meta(impl, id);
    if (!meta)
      return meta.error();
    if (!*meta)
      continue;
    auto st = batch.Delete(impl.handle(cf::model_meta), id);
    // A file-held model has no chunks: its file goes after the batch.
    if (st.ok() && (*meta)->file().empty()) {
      auto [begin, end] = chunk_range(id);
      st = batch.DeleteRange(impl.handle(cf::model_chunks), begin, end);
      if (low.empty() || begin < low)
        low = begin;
      if (high.empty() || end > high)
        high = end;
    }
    if (auto err = to_error(st, "deleting model " + id))
      return err;
    if (!(*meta)->file().empty())
      files.push_back((*meta)->file());
    ++n;
  }
  if (n == cached)
    return n;
  rocksdb::WriteOptions wo;
  wo.sync = true;
  if (auto err = to_error(impl.db->Write(wo, &batch), "deleting models"))
    return err;
  guard.unlock();
  remove_files(files);
  if (!low.empty())
    compact_chunks(low, high);
  return n;
}

void model_store::compact_chunks(const std::string& low,
                                 const std::string& high) {
  auto& impl = db_->get();
  // Without this the deleted chunks stay on disk until compactions reach
  // their files by chance: a combiner's database peaked at 993 MiB for 80
  // models of 4 MB (issue #15). Compacting the deleted span rewrites only
  // the files that overlap it; the range tombstones drop the chunks.
  rocksdb::CompactRangeOptions opts;
  opts.exclusive_manual_compaction = false;
  opts.bottommost_level_compaction =
    rocksdb::BottommostLevelCompaction::kForceOptimized;
  rocksdb::Slice begin{low};
  rocksdb::Slice end{high};
  auto st = impl.db->CompactRange(opts, impl.handle(cf::model_chunks), &begin,
                                  &end);
  // Best effort: the models are deleted either way; RocksDB's own
  // compactions reclaim the space later.
  std::lock_guard<std::mutex> guard{mtx_};
  if (!st.ok())
    last_compaction_error_ = to_error(st, "compacting deleted model chunks");
  else
    ++compactions_;
}

size_t model_store::compactions() {
  std::lock_guard<std::mutex> guard{mtx_};
  return compactions_;
}

caf::error model_store::last_compaction_error() {
  std::lock_guard<std::mutex> guard{mtx_};
  return last_compaction_error_;
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
