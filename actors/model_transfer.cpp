#include "actors/model_transfer.hpp"

#include "actors/type_ids.hpp"
#include "messages/error.hpp"
#include "storage/model_store.hpp"

#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

#include <algorithm>

namespace rondo {

caf::expected<model_chunk> read_model_chunk(storage::model_store& store,
                                            const std::string& model_id,
                                            uint64_t index) {
  auto info = store.info(model_id);
  if (!info)
    return info.error();
  model_chunk c;
  c.model_id = model_id;
  c.index = index;
  c.count = info->chunk_count;
  c.total_bytes = info->size_bytes;
  c.checksum = info->checksum;
  if (info->chunk_count == 0 && index == 0)
    return c; // An empty model: one empty chunk.
  auto bytes = store.read_chunk(model_id, index);
  if (!bytes)
    return bytes.error();
  c.bytes = std::move(*bytes);
  return c;
}

namespace {

/// Bound on fetching one whole model (each chunk is bounded separately).
constexpr auto whole_fetch_bound = std::chrono::seconds(7200);

using fetcher_ptr = fetcher_actor::stateful_pointer<fetcher_state>;

void conclude(fetcher_ptr self, caf::expected<std::string> result) {
  auto& st = self->state;
  if (!result && st.writer)
    st.writer->abort();
  st.writer.reset();
  st.result = std::move(result);
  st.finished = true;
  for (auto& rp : st.waiting) {
    if (st.result)
      rp.deliver(*st.result);
    else
      rp.deliver(st.result.error());
  }
  // Answered: done. (Without a waiter yet, the first get quits.) A fetcher
  // that lingers stays in CAF's registry once its requests crossed the
  // middleman, and crashes the actor system's shutdown.
  if (!st.waiting.empty()) {
    st.waiting.clear();
    self->quit();
  }
}

void request_chunk(fetcher_ptr self, chunk_source_actor source,
                   uint64_t index, caf::timespan timeout);

/// Requests chunks until `fetch_window` are in flight or all are asked.
void fill_window(fetcher_ptr self, chunk_source_actor source,
                 caf::timespan timeout) {
  auto& st = self->state;
  while (!st.finished && st.next_request < st.count
         && st.next_request < st.next_write + fetch_window)
    request_chunk(self, source, st.next_request++, timeout);
}

/// All chunks written: checks the size, commits, checks the checksum.
void finish_fetch(fetcher_ptr self) {
  auto& st = self->state;
  if (st.writer->size() != st.total_bytes)
    return conclude(self,
                    caf::make_error(ec::corrupt,
                                    "fetched model " + st.model_id + " has "
                                      + std::to_string(st.writer->size())
                                      + " bytes, the source has "
                                      + std::to_string(st.total_bytes)));
  auto info = st.writer->commit();
  if (!info)
    return conclude(self, info.error());
  if (info->checksum != st.checksum) {
    static_cast<void>(st.store->remove(st.model_id));
    return conclude(self, caf::make_error(ec::corrupt,
                                          "fetched model " + st.model_id
                                            + " fails its checksum"));
  }
  conclude(self, st.model_id);
}

void on_chunk(fetcher_ptr self, chunk_source_actor source, uint64_t index,
              caf::timespan timeout, model_chunk& c) {
  auto& st = self->state;
  if (st.finished)
    return; // an earlier chunk failed the fetch
  auto where = "chunk " + std::to_string(index) + " of model " + st.model_id;
  if (c.index != index || c.model_id != st.model_id)
    return conclude(self, caf::make_error(ec::corrupt, "fetching " + where
                                                         + ": got another "
                                                           "chunk"));
  if (index == 0) {
    st.count = std::max<uint64_t>(c.count, 1);
    st.total_bytes = c.total_bytes;
    st.checksum = c.checksum;
  } else if (std::max<uint64_t>(c.count, 1) != st.count
             || c.total_bytes != st.total_bytes
             || c.checksum != st.checksum) {
    return conclude(self, caf::make_error(ec::corrupt,
                                          "fetching " + where
                                            + ": the model's size or "
                                              "checksum changed"));
  }
  st.early.emplace(index, std::move(c));
  for (auto i = st.early.find(st.next_write); i != st.early.end();
       i = st.early.find(st.next_write)) {
    if (auto err = st.writer->write(i->second.bytes))
      return conclude(self, err);
    st.early.erase(i);
    ++st.next_write;
  }
  if (st.next_write == st.count)
    return finish_fetch(self);
  fill_window(self, source, timeout);
}

void request_chunk(fetcher_ptr self, chunk_source_actor source,
                   uint64_t index, caf::timespan timeout) {
  auto& id = self->state.model_id;
  self->request(source, timeout, caf::get_atom::value, id, index)
    .then(
      [self, source, index, timeout](model_chunk& c) {
        on_chunk(self, source, index, timeout, c);
      },
      [self, index](caf::error& err) {
        if (self->state.finished)
          return;
        conclude(self, caf::make_error(
                         ec::staging_failed,
                         "fetching chunk " + std::to_string(index)
                           + " of model " + self->state.model_id + ": "
                           + render(err)));
      });
}

} // namespace

fetcher_actor::behavior_type
model_fetcher(fetcher_actor::stateful_pointer<fetcher_state> self,
              chunk_source_actor source, std::string model_id,
              std::shared_ptr<storage::model_store> store,
              caf::timespan timeout) {
  auto& st = self->state;
  st.model_id = std::move(model_id);
  st.store = std::move(store);
  auto have = st.store->exists(st.model_id);
  if (!have) {
    conclude(self, have.error());
  } else if (*have) {
    conclude(self, st.model_id);
  } else if (!source) {
    conclude(self, caf::make_error(ec::not_found,
                                   "model " + st.model_id
                                     + " is not stored here and there is no "
                                       "source to fetch it from"));
  } else {
    auto writer = st.store->begin_write(st.model_id);
    if (!writer)
      conclude(self, writer.error());
    else {
      st.writer = std::move(*writer);
      // Chunk 0 first: its reply gives the chunk count that bounds the
      // window.
      fill_window(self, source, timeout);
    }
  }
  return {
    [self](caf::get_atom) -> caf::result<std::string> {
      auto& st = self->state;
      if (!st.finished) {
        st.waiting.push_back(self->make_response_promise<std::string>());
        return st.waiting.back();
      }
      self->quit();
      if (!st.result)
        return st.result.error();
      return *st.result;
    },
  };
}

model_source_actor::behavior_type
chunked_model_source(model_source_actor::pointer self,
                     chunk_source_actor source,
                     std::shared_ptr<storage::model_store> store,
                     caf::timespan timeout) {
  return {
    [=](caf::get_atom, const std::string& model_id)
      -> caf::result<model_blob> {
      auto fetcher = self->spawn<caf::linked>(model_fetcher, source, model_id,
                                              store,
                                 timeout);
      auto rp = self->make_response_promise<model_blob>();
      // Each chunk request is bounded by `timeout`, so a fetcher always
      // answers; the whole fetch has its own generous bound.
      self->request(fetcher, whole_fetch_bound, caf::get_atom::value)
        .then(
          [rp, store](std::string& id) mutable {
            auto bytes = store->get(id);
            if (!bytes)
              rp.deliver(bytes.error());
            else
              rp.deliver(model_blob{
                id, std::make_shared<const std::string>(std::move(*bytes))});
          },
          [rp](caf::error& err) mutable { rp.deliver(std::move(err)); });
      return rp;
    },
  };
}

} // namespace rondo
