#include "actors/model_transfer.hpp"

#include "actors/type_ids.hpp"
#include "messages/error.hpp"
#include "storage/model_store.hpp"

#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

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
                   uint64_t index, caf::timespan timeout) {
  auto& id = self->state.model_id;
  self->request(source, timeout, caf::get_atom::value, id, index)
    .then(
      [self, source, index, timeout](model_chunk& c) {
        auto& st = self->state;
        auto where = "chunk " + std::to_string(index) + " of model "
                     + st.model_id;
        if (c.index != index || c.model_id != st.model_id)
          return conclude(self, caf::make_error(ec::corrupt,
                                                "fetching " + where
                                                  + ": got another chunk"));
        if (auto err = st.writer->write(c.bytes))
          return conclude(self, err);
        if (index + 1 < c.count)
          return request_chunk(self, source, index + 1, timeout);
        if (st.writer->size() != c.total_bytes)
          return conclude(self,
                          caf::make_error(ec::corrupt,
                                          "fetched model " + st.model_id
                                            + " has "
                                            + std::to_string(st.writer->size())
                                            + " bytes, the source has "
                                            + std::to_string(c.total_bytes)));
        auto info = st.writer->commit();
        if (!info)
          return conclude(self, info.error());
        if (info->checksum != c.checksum) {
          static_cast<void>(st.store->remove(st.model_id));
          return conclude(self, caf::make_error(ec::corrupt,
                                                "fetched model " + st.model_id
                                                  + " fails its checksum"));
        }
        conclude(self, st.model_id);
      },
      [self, index](caf::error& err) {
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
      request_chunk(self, source, 0, timeout);
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
