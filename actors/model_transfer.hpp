#pragma once

// Moving models between the controller and its combiners as chunks
// (messages/controller_messages.hpp model_chunk), so that no model crosses
// the middleman as one message.

#include "actors/actors.hpp"

#include <caf/expected.hpp>

#include <caf/typed_response_promise.hpp>

#include <functional>
#include <map>
#include <memory>
#include <string>

namespace rondo {

namespace storage {
class model_store;
class model_writer;
} // namespace storage

/// Chunk `index` of a stored model, with the model's size and checksum.
/// @returns ec::not_found / ec::invalid_argument / ec::corrupt as
///          model_store::read_chunk.
caf::expected<model_chunk> read_model_chunk(storage::model_store& store,
                                            const std::string& model_id,
                                            uint64_t index);

/// Fetches one model chunk by chunk into a local store.
/// - (get) -> model id, once the whole model is stored (or an error).
using fetcher_actor
  = caf::typed_actor<caf::replies_to<caf::get_atom>::with<std::string>>;

struct fetcher_state {
  static inline constexpr const char* name = "model-fetcher";
  std::string model_id;
  std::shared_ptr<storage::model_store> store;
  std::unique_ptr<storage::model_writer> writer;
  /// The outcome once known; requests before that wait in `waiting`.
  caf::expected<std::string> result = caf::make_error(caf::sec::none);
  bool finished = false;
  std::vector<caf::typed_response_promise<std::string>> waiting;
  /// Chunks of the model (at least 1: an empty model is one empty chunk),
  /// its size and checksum, as the first chunk's reply gave them.
  uint64_t count = 1;
  uint64_t total_bytes = 0;
  uint64_t checksum = 0;
  /// The next chunk to request and the next one to write.
  uint64_t next_request = 0;
  uint64_t next_write = 0;
  /// Chunks that arrived before an earlier one, by index (at most
  /// fetch_window of them).
  std::map<uint64_t, model_chunk> early;
};

/// Chunk requests a fetcher keeps in flight once it knows the model's
/// size: chunks are 1 MiB, so at most this many MiB wait out of order. With
/// one request in flight the link idled for a round trip per chunk.
constexpr uint64_t fetch_window = 4;

/// Fetches `model_id` from `source` chunk by chunk (up to `fetch_window`
/// requests in flight, each bounded by `timeout`; written in order) into `store` under the same id, verifying
/// size and XXH3 checksum: nothing becomes visible unless all of it arrived
/// intact. A model the store already has is not fetched again. The actor
/// quits once it has answered.
fetcher_actor::behavior_type
model_fetcher(fetcher_actor::stateful_pointer<fetcher_state> self,
              chunk_source_actor source, std::string model_id,
              std::shared_ptr<storage::model_store> store,
              caf::timespan timeout);

/// A model_source_actor over a chunk source: staging's remote source on a
/// combiner, fetching global models from the controller into the local
/// store. Each chunk request is bounded by `timeout`, a whole fetch by two
/// hours.
model_source_actor::behavior_type
chunked_model_source(model_source_actor::pointer self,
                     chunk_source_actor source,
                     std::shared_ptr<storage::model_store> store,
                     caf::timespan timeout);

} // namespace rondo
