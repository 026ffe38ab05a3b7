#include "storage/update_cache.hpp"

#include "messages/error.hpp"
#include "storage/model_store.hpp"

#include <filesystem>
#include <system_error>

namespace rondo::storage {

update_cache::update_cache(update_cache_options opts)
  : opts_(std::move(opts)), budget_(opts_.memory_bytes) {
}

caf::expected<std::shared_ptr<update_cache>>
update_cache::make(update_cache_options opts) {
  if (!(opts.ttl_seconds > 0))
    return caf::make_error(ec::invalid_config,
                           "update cache: ttl must be > 0 seconds, got "
                             + std::to_string(opts.ttl_seconds));
  if (opts.spill_dir.empty())
    return caf::make_error(ec::invalid_config,
                           "update cache: no spill folder");
  std::error_code err;
  std::filesystem::create_directories(opts.spill_dir, err);
  if (err)
    return caf::make_error(ec::storage_error, "cannot create spill folder "
                                                + opts.spill_dir + ": "
                                                + err.message());
  // Spill files of an earlier process are garbage: no entry names them.
  for (auto& f : std::filesystem::directory_iterator{opts.spill_dir, err})
    std::filesystem::remove(f.path(), err);
  return std::shared_ptr<update_cache>{new update_cache(std::move(opts))};
}

caf::error update_cache::reserve(const std::string& model_id) {
  std::lock_guard<std::mutex> guard{mtx_};
  auto i = entries_.find(model_id);
  if (i != entries_.end())
    return caf::make_error(ec::already_exists,
                           "model " + model_id
                             + (i->second.complete ? " already exists"
                                                   : " is being uploaded"));
  entries_.emplace(model_id, entry{});
  return caf::none;
}

npz_stream_options update_cache::decoder_options() {
  npz_stream_options o;
  o.npz = opts_.npz;
  o.budget = &budget_;
  o.spill_dir = opts_.spill_dir;
  return o;
}

void update_cache::complete(
  const std::string& model_id,
  caf::expected<std::shared_ptr<decoded_update>> result) {
  // The entry that expires is destroyed outside the lock (it may unlink a
  // spill file).
  std::vector<entry> expired;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    auto now = std::chrono::steady_clock::now();
    auto& e = entries_[model_id];
    e.complete = true;
    e.result = std::move(result);
    e.completed_at = now;
    auto ttl = std::chrono::duration<double>(opts_.ttl_seconds);
    for (auto i = entries_.begin(); i != entries_.end();) {
      if (i->second.complete && now - i->second.completed_at > ttl) {
        expired.push_back(std::move(i->second));
        i = entries_.erase(i);
      } else {
        ++i;
      }
    }
  }
}

void update_cache::release(const std::string& model_id) {
  std::lock_guard<std::mutex> guard{mtx_};
  auto i = entries_.find(model_id);
  if (i != entries_.end() && !i->second.complete)
    entries_.erase(i);
}

bool update_cache::contains(const std::string& model_id) {
  std::lock_guard<std::mutex> guard{mtx_};
  return entries_.count(model_id) > 0;
}

bool update_cache::holds(const std::string& model_id) {
  std::lock_guard<std::mutex> guard{mtx_};
  auto i = entries_.find(model_id);
  return i != entries_.end() && i->second.complete;
}

caf::expected<std::shared_ptr<decoded_update>>
update_cache::find(const std::string& model_id) {
  std::lock_guard<std::mutex> guard{mtx_};
  auto i = entries_.find(model_id);
  if (i == entries_.end())
    return caf::make_error(ec::not_found,
                           "model update " + model_id + " is not held");
  if (!i->second.complete)
    return caf::make_error(ec::invalid_state,
                           "model update " + model_id
                             + " is still being uploaded");
  return i->second.result;
}

bool update_cache::remove(const std::string& model_id) {
  entry gone;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    auto i = entries_.find(model_id);
    if (i == entries_.end() || !i->second.complete)
      return false;
    gone = std::move(i->second);
    entries_.erase(i);
  }
  return true;
}

size_t update_cache::size() {
  std::lock_guard<std::mutex> guard{mtx_};
  size_t n = 0;
  for (auto& [id, e] : entries_)
    n += e.complete ? 1 : 0;
  return n;
}

caf::expected<std::shared_ptr<decoded_update>>
read_decoded(model_store& store, const std::string& model_id,
             const npz_stream_options& opts) {
  auto reader = store.open_read(model_id);
  if (!reader)
    return reader.error();
  npz_stream_decoder decoder{opts};
  if (auto err = reader->for_each(
        [&decoder](std::string_view chunk) { return decoder.feed(chunk); }))
    return err;
  return decoder.finish();
}

} // namespace rondo::storage
