// fedn.ModelService: models streamed in chunks between clients and the
// model store, never held whole in memory.
//
// Upload (client stream): ModelRequest{id, data=chunk, status=IN_PROGRESS}
// ..., then a terminator ModelRequest{id, status=OK} without data, then the
// client half-closes. Each chunk goes straight into a model_writer; the
// model is committed (and becomes visible) only after the terminator and
// the half-close. Any error aborts the writer, so nothing is left behind:
//   INVALID_ARGUMENT   missing id, id changed mid-stream, a status other
//                      than IN_PROGRESS/OK, a terminator with data, a
//                      message after the terminator, an empty model, a bad
//                      model id, the stream ended without a terminator, a
//                      message that is not a ModelRequest ("malformed
//                      ModelRequest: " and the fault);
//   RESOURCE_EXHAUSTED the model exceeds max_model_bytes, or one message's
//                      data exceeds max_upload_chunk_bytes (gRPC itself
//                      refuses any message over max_receive_message_bytes);
//   ALREADY_EXISTS     a model with that id exists or is being uploaded
//                      (an upload never overwrites a model);
//   UNAUTHENTICATED / PERMISSION_DENIED  see gateway/auth.hpp (with a
//                      token naming a client, the `client` metadata must
//                      name the same client);
//   ABORTED            the client sent status FAILED;
//   INTERNAL           the store failed.
// Success: ModelResponse{id, status=OK, message="stored <n> bytes"}.
// Upload is a raw (ByteBuffer) method: a message is checked whole before
// its data goes to the writer, straight from gRPC's slices (no protobuf
// copy into a std::string).
//
// Download (server stream): ModelResponse{id, data=chunk (<= chunk_bytes),
// status=IN_PROGRESS} ..., then ModelResponse{id, status=OK} without data,
// status OK. An unknown (or unreadable) model: exactly one
// ModelResponse{id, status=FAILED, message} and the stream ends (status
// OK, as FEDn's clients expect). A model found corrupt mid-stream: one
// FAILED message after the chunks sent so far, then the end. With tokens,
// a client-role caller may download only global models (those the
// combiner sent to clients in tasks, see edge_core::sent_global_model),
// never another client's model update: PERMISSION_DENIED naming the model.
// Download is a raw (ByteBuffer) method: each chunk is handed to gRPC as a
// slice of its own, not copied by protobuf's serializer.

#include "api/metrics.hpp"
#include "gateway/auth.hpp"
#include "gateway/edge_core.hpp"
#include "gateway/wire.hpp"
#include "messages/error.hpp"
#include "storage/model_store.hpp"
#include "storage/update_cache.hpp"
#include "model/npz_stream.hpp"

#include <caf/atom.hpp>

#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/proto_buffer_reader.h>
#include <grpcpp/support/slice.h>

#include <optional>

namespace rondo::gateway::detail {

namespace {

/// The gRPC code for a store error.
grpc::StatusCode to_code(const caf::error& err) {
  if (err.category() != caf::atom("rondo"))
    return grpc::StatusCode::INTERNAL;
  switch (static_cast<ec>(err.code())) {
    case ec::already_exists: return grpc::StatusCode::ALREADY_EXISTS;
    case ec::invalid_argument: return grpc::StatusCode::INVALID_ARGUMENT;
    case ec::not_found: return grpc::StatusCode::NOT_FOUND;
    case ec::too_large: return grpc::StatusCode::RESOURCE_EXHAUSTED;
    default: return grpc::StatusCode::INTERNAL;
  }
}

/// A ModelResponse in wire format whose `data` is `data` itself, not a
/// copy: gRPC sends the bytes from the string, which the returned buffer
/// owns. `head` must not carry data.
/// `head` serialized, followed by the tag and length of a `data` field of
/// `n` bytes (field 1, wire type 2, the length as a varint; protobuf
/// accepts fields in any order): the bytes that precede the data.
std::string data_prefix(const fedn::ModelResponse& head, uint64_t n) {
  auto bytes = head.SerializeAsString();
  bytes.push_back(static_cast<char>((1 << 3) | 2));
  for (;; n >>= 7) {
    if (n < 0x80) {
      bytes.push_back(static_cast<char>(n));
      break;
    }
    bytes.push_back(static_cast<char>((n & 0x7f) | 0x80));
  }
  return bytes;
}

grpc::ByteBuffer with_data(const fedn::ModelResponse& head, std::string data) {
  if (data.empty()) {
    grpc::Slice only{head.SerializeAsString()};
    return grpc::ByteBuffer{&only, 1};
  }
  auto bytes = data_prefix(head, data.size());
  auto* owned = new std::string(std::move(data));
  grpc::Slice slices[] = {
    grpc::Slice{bytes},
    grpc::Slice{owned->data(), owned->size(),
                [](void* p) { delete static_cast<std::string*>(p); }, owned},
  };
  return grpc::ByteBuffer{slices, 2};
}

/// As with_data, for `n` bytes at `offset` of shared `bytes`: the message
/// refers to them (no copy) and holds a reference until gRPC is done.
grpc::ByteBuffer with_shared_data(const fedn::ModelResponse& head,
                                  const std::shared_ptr<const std::string>& bytes,
                                  size_t offset, size_t n) {
  auto framing = data_prefix(head, n);
  using ref = std::shared_ptr<const std::string>;
  auto* keep = new ref(bytes);
  grpc::Slice slices[] = {
    grpc::Slice{framing},
    grpc::Slice{const_cast<char*>(bytes->data()) + offset, n,
                [](void* p) { delete static_cast<ref*>(p); }, keep},
  };
  return grpc::ByteBuffer{slices, 2};
}

/// The upload stream, read as raw ByteBuffers so that each chunk goes from
/// gRPC's slices to the model writer without protobuf's copy into a
/// std::string. Each message is read in two passes over its bytes:
/// `scan_model_request` reads id and status and notes where `data` lies
/// (on the wire it precedes both); once the message has passed every check
/// below, `for_each_data_span` hands the data to the writer span by span.
class upload final : public grpc::ServerReadReactor<grpc::ByteBuffer> {
public:
  /// `response`: where the serialized ModelResponse goes on success.
  /// `uploader`: the client's id from the call's metadata (may be empty).
  upload(std::shared_ptr<edge_core> core, grpc::ByteBuffer* response,
         std::string uploader)
    : core_(std::move(core)), response_(response),
      uploader_(std::move(uploader)) {
    StartRead(&raw_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      end_of_stream();
      return;
    }
    if (terminated_)
      return fail(grpc::StatusCode::INVALID_ARGUMENT,
                  "upload of model " + id_
                    + ": a message after the terminator (status OK)");
    model_request_fields req;
    caf::error malformed;
    {
      grpc::ProtoBufferReader in{&raw_};
      malformed = scan_model_request(in, req);
    }
    if (malformed) {
      // Name the model: the stream's, else the id read before the fault.
      auto& id = !id_.empty() ? id_ : req.id;
      return fail(grpc::StatusCode::INVALID_ARGUMENT,
                  (id.empty() ? std::string{"upload: "}
                              : "upload of model " + id + ": ")
                    + error_detail(malformed));
    }
    if (req.id.empty())
      return fail(grpc::StatusCode::INVALID_ARGUMENT,
                  "upload: a ModelRequest without id"
                    + (id_.empty() ? std::string{} : " (model " + id_ + ")"));
    if (id_.empty()) {
      id_ = req.id;
      if (auto err = storage::validate_model_id(id_))
        return fail(grpc::StatusCode::INVALID_ARGUMENT,
                    "upload of model " + id_ + ": " + error_detail(err));
    } else if (req.id != id_) {
      return fail(grpc::StatusCode::INVALID_ARGUMENT,
                  "upload of model " + id_ + ": the id changed mid-stream to "
                    + req.id);
    }
    switch (req.status) {
      case fedn::IN_PROGRESS: {
        auto size = req.data_size;
        if (size > core_->cfg.max_upload_chunk_bytes)
          return fail(grpc::StatusCode::RESOURCE_EXHAUSTED,
                      "upload of model " + id_ + ": a chunk of "
                        + std::to_string(size)
                        + " bytes exceeds max_upload_chunk_bytes ("
                        + std::to_string(core_->cfg.max_upload_chunk_bytes)
                        + ")");
        auto limit = core_->cfg.max_model_bytes;
        if (size > limit || received_ > limit - size)
          return fail(grpc::StatusCode::RESOURCE_EXHAUSTED,
                      "upload of model " + id_ + ": exceeds max_model_bytes ("
                        + std::to_string(limit) + " bytes)");
        if (size > 0 && !sink_chosen_) {
          if (auto err = choose_sink(req))
            return fail(to_code(err), "upload of model " + id_ + ": "
                                        + error_detail(err));
        }
        // The message is valid: now its data. When the writer's buffers
        // are all on their way to the disk, the data waits in `raw_` and
        // this reactor holds no thread: the store's I/O thread that frees
        // a buffer resumes it.
        if (size > 0 && writer_
            && writer_->wait_for_room(size, [this, req] { write_data(req); }))
          return;
        return write_data(req);
      }
      case fedn::OK:
        if (req.data_size > 0)
          return fail(grpc::StatusCode::INVALID_ARGUMENT,
                      "upload of model " + id_
                        + ": the terminator (status OK) carries data");
        if (received_ == 0)
          return fail(grpc::StatusCode::INVALID_ARGUMENT,
                      "upload of model " + id_ + ": the model is empty");
        terminated_ = true;
        break;
      case fedn::FAILED:
        return fail(grpc::StatusCode::ABORTED,
                    "upload of model " + id_
                      + ": the client reported FAILED");
      default:
        return fail(grpc::StatusCode::INVALID_ARGUMENT,
                    "upload of model " + id_ + ": unexpected status "
                      + status_name(req.status)
                      + " (expected IN_PROGRESS chunks, then one OK)");
    }
    read_next();
  }

  void OnDone() override {
    // An uncommitted writer aborts on destruction.
    delete this;
  }

private:
  /// Writes the data of the valid IN_PROGRESS message `req` (in `raw_`),
  /// in the spans gRPC holds, then reads the next message.
  void write_data(const model_request_fields& req) {
    if (req.data_size > 0) {
      grpc::ProtoBufferReader in{&raw_};
      caf::error err;
      if (writer_) {
        auto* writer = writer_.get();
        err = for_each_data_span(in, req, [writer](std::string_view span) {
          return writer->write(span);
        });
      } else if (decoder_) {
        // A decode error does not fail the upload (FEDn's clients expect
        // it stored): the bytes are dropped from then on, the memory is
        // freed now, and the round rejects the update with this reason.
        auto* decoder = decoder_.get();
        auto bad = for_each_data_span(in, req, [decoder](std::string_view sp) {
          return decoder->feed(sp);
        });
        if (bad) {
          decode_error_ = std::move(bad);
          decoder_.reset();
        }
      }
      if (err)
        return fail(grpc::StatusCode::INTERNAL,
                    "upload of model " + id_ + ": " + render(err));
      received_ += req.data_size;
    }
    read_next();
  }

  /// At the first data of the upload: an npz archive (it starts with a ZIP
  /// local header) is decoded as it streams into the combiner's update
  /// cache when there is one; anything else streams into the model store.
  caf::error choose_sink(const model_request_fields& req) {
    sink_chosen_ = true;
    auto& cache = core_->models->updates();
    bool zip = false;
    if (cache && req.data_size >= 4) {
      std::string head;
      grpc::ProtoBufferReader in{&raw_};
      static_cast<void>(
        for_each_data_span(in, req, [&head](std::string_view span) {
          head.append(span.substr(0, 4 - std::min<size_t>(4, head.size())));
          return caf::error{};
        }));
      zip = head == std::string_view{"PK\x03\x04", 4};
    }
    if (zip) {
      auto stored = core_->models->exists(id_);
      if (!stored)
        return stored.error();
      if (*stored)
        return caf::make_error(ec::already_exists,
                               "model " + id_ + " already exists");
      if (auto err = cache->reserve(id_))
        return err;
      reserved_ = true;
      decoder_ = std::make_unique<npz_stream_decoder>(cache->decoder_options());
      return caf::none;
    }
    if (cache && cache->contains(id_))
      return caf::make_error(ec::already_exists,
                             "model " + id_ + " already exists");
    auto w = core_->models->begin_write(
      id_, core_->cfg.sync_uploads ? storage::durability::synced
                                   : storage::durability::unsynced);
    if (!w)
      return w.error();
    writer_ = std::move(*w);
    return caf::none;
  }

  void read_next() {
    // Let gRPC free the message's slices before the next read.
    raw_.Clear();
    StartRead(&raw_);
  }

  /// The status's enum name, or its number for a value fedn.ModelStatus
  /// lacks (proto3 enums are open).
  static std::string status_name(int32_t status) {
    auto& name = fedn::ModelStatus_Name(status);
    return name.empty() ? std::to_string(status) : name;
  }

  void end_of_stream() {
    if (id_.empty())
      return fail(grpc::StatusCode::INVALID_ARGUMENT,
                  "upload: the stream carried no ModelRequest");
    if (!terminated_)
      return fail(grpc::StatusCode::INVALID_ARGUMENT,
                  "upload of model " + id_
                    + ": the stream ended without a terminator (status OK); "
                      "nothing was stored");
    if (writer_) {
      auto info = writer_->commit();
      if (!info)
        return fail(grpc::StatusCode::INTERNAL,
                    "upload of model " + id_ + ": " + render(info.error()));
      writer_.reset();
      spdlog::info("edge: stored model {} ({} bytes)", id_, received_);
    } else {
      caf::expected<std::shared_ptr<decoded_update>> result{
        std::move(decode_error_)};
      if (decoder_) {
        result = decoder_->finish();
        decoder_.reset();
      }
      if (result)
        spdlog::info("edge: decoded model update {} ({} bytes, {} decoded{})",
                     id_, received_, (*result)->data_bytes(),
                     (*result)->in_memory() ? "" : ", spilled to a file");
      else
        spdlog::warn("edge: model update {} ({} bytes) is not a valid "
                     "model: {}",
                     id_, received_, render(result.error()));
      core_->models->updates()->complete(id_, std::move(result));
      reserved_ = false;
    }
    metrics::add_bytes_uploaded(received_);
    if (!uploader_.empty())
      core_->uploaded(id_, uploader_);
    fedn::ModelResponse response;
    response.set_id(id_);
    response.set_status(fedn::OK);
    response.set_message("stored " + std::to_string(received_) + " bytes");
    auto bytes = with_data(response, {});
    response_->Swap(&bytes);
    Finish(grpc::Status::OK);
  }

  void fail(grpc::StatusCode code, const std::string& reason) {
    if (writer_) {
      writer_->abort();
      writer_.reset();
    }
    decoder_.reset();
    if (reserved_) {
      core_->models->updates()->release(id_);
      reserved_ = false;
    }
    spdlog::warn("edge: {}", reason);
    Finish(grpc::Status(code, reason));
  }

  std::shared_ptr<edge_core> core_;
  grpc::ByteBuffer* response_;
  std::string uploader_;
  /// The message just read (gRPC fills it until OnReadDone).
  grpc::ByteBuffer raw_;
  std::string id_;
  /// The store path's writer (not an npz, or no update cache).
  std::unique_ptr<storage::model_writer> writer_;
  /// The npz path's decoder; null after a decode error.
  std::unique_ptr<npz_stream_decoder> decoder_;
  /// Why the npz's bytes were not a valid model.
  caf::error decode_error_;
  /// The id is claimed in the update cache.
  bool reserved_ = false;
  bool sink_chosen_ = false;
  /// Bytes of model received so far.
  uint64_t received_ = 0;
  bool terminated_ = false;
};

/// Parses the Download request (small) from its wire bytes.
bool parse_request(const grpc::ByteBuffer& raw, fedn::ModelRequest& req) {
  std::vector<grpc::Slice> slices;
  if (!raw.Dump(&slices).ok())
    return false;
  std::string bytes;
  for (auto& slice : slices)
    bytes.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
  return req.ParseFromString(bytes);
}

/// The download stream, written as raw ByteBuffers so that each chunk goes
/// to gRPC without protobuf serializing (copying) it.
class download final : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
public:
  /// `caller`: who asks (as `admit` found it).
  download(std::shared_ptr<edge_core> core, const grpc::ByteBuffer* raw,
           const caller& who)
    : core_(std::move(core)) {
    fedn::ModelRequest req;
    if (!parse_request(*raw, req)) {
      fail("download: the request is not a ModelRequest");
      return;
    }
    id_ = req.id();
    if (id_.empty()) {
      fail("download: the request has no id");
      return;
    }
    if (who.checked && who.role == security::role::client
        && !core_->is_global_model(id_)) {
      auto reason = "download of model " + id_
                    + " refused: a client may download only global models "
                      "(those the combiner sent in tasks), and "
                    + id_ + " is not one (e.g. another client's update)";
      spdlog::warn("edge: {} (client '{}')", reason, who.client);
      last_ = true;
      Finish(grpc::Status(grpc::StatusCode::PERMISSION_DENIED, reason));
      return;
    }
    auto hot = core_->hot_model(id_);
    if (!hot) {
      fail("download of model " + id_ + ": " + error_detail(hot.error()));
      return;
    }
    if (*hot) {
      hot_ = std::move(*hot);
      next();
      return;
    }
    auto r = core_->models->open_read(id_);
    if (!r) {
      fail("download of model " + id_ + ": " + error_detail(r.error()));
      return;
    }
    reader_.emplace(std::move(*r));
    next();
  }

  void OnWriteDone(bool ok) override {
    if (last_)
      return;
    if (!ok) {
      // The client went away; nothing more can be written.
      last_ = true;
      Finish(grpc::Status(grpc::StatusCode::CANCELLED,
                          "download of model " + id_ + " broke off"));
      return;
    }
    next();
  }

  void OnDone() override {
    delete this;
  }

private:
  /// Writes the next piece: a slice of the current store chunk, else the
  /// next store chunk, else the terminator.
  void next() {
    auto limit = size_t{core_->cfg.chunk_bytes};
    if (hot_)
      return next_hot(limit);
    if (offset_ >= buf_.size()) {
      buf_.clear();
      offset_ = 0;
      auto more = reader_->next(buf_);
      if (!more) {
        fail("download of model " + id_ + ": " + error_detail(more.error()));
        return;
      }
      if (!*more)
        return finish_ok();
    }
    auto head = chunk_head();
    if (offset_ == 0 && buf_.size() <= limit) {
      // The whole store chunk fits one message: hand the buffer over.
      metrics::add_bytes_downloaded(buf_.size());
      out_ = with_data(head, std::move(buf_));
      buf_.clear();
    } else {
      auto n = std::min(limit, buf_.size() - offset_);
      metrics::add_bytes_downloaded(n);
      out_ = with_data(head, buf_.substr(offset_, n));
      offset_ += n;
    }
    StartWrite(&out_);
  }

  /// next() for a model held in memory: each message's data is a slice of
  /// the shared bytes (no copy), which it keeps alive until gRPC sent it.
  void next_hot(size_t limit) {
    if (offset_ >= hot_->size())
      return finish_ok();
    auto head = chunk_head();
    auto n = std::min(limit, hot_->size() - offset_);
    metrics::add_bytes_downloaded(n);
    out_ = with_shared_data(head, hot_, offset_, n);
    offset_ += n;
    StartWrite(&out_);
  }

  /// The fields of an IN_PROGRESS message, without its data.
  fedn::ModelResponse chunk_head() const {
    fedn::ModelResponse head;
    head.set_id(id_);
    head.set_status(fedn::IN_PROGRESS);
    return head;
  }

  /// The terminator (status OK, no data), then the end of the stream.
  void finish_ok() {
    fedn::ModelResponse end;
    end.set_id(id_);
    end.set_status(fedn::OK);
    out_ = with_data(end, {});
    last_ = true;
    StartWriteAndFinish(&out_, grpc::WriteOptions(), grpc::Status::OK);
  }

  /// One FAILED message, then the end of the stream (status OK).
  void fail(const std::string& reason) {
    spdlog::warn("edge: {}", reason);
    fedn::ModelResponse msg;
    msg.set_id(id_);
    msg.set_status(fedn::FAILED);
    msg.set_message(reason);
    out_ = with_data(msg, {});
    last_ = true;
    StartWriteAndFinish(&out_, grpc::WriteOptions(), grpc::Status::OK);
  }

  std::shared_ptr<edge_core> core_;
  std::string id_;
  std::optional<storage::model_reader> reader_;
  /// A global model served from memory (edge_core::hot_model), else null.
  std::shared_ptr<const std::string> hot_;
  std::string buf_;
  size_t offset_ = 0;
  /// The message being written (gRPC reads it until OnWriteDone).
  grpc::ByteBuffer out_;
  bool last_ = false;
};

class model_service final
  : public fedn::ModelService::WithRawCallbackMethod_Upload<
      fedn::ModelService::WithRawCallbackMethod_Download<
        fedn::ModelService::Service>> {
public:
  explicit model_service(std::shared_ptr<edge_core> core)
    : core_(std::move(core)) {
  }

  grpc::ServerReadReactor<grpc::ByteBuffer>*
  Upload(grpc::CallbackServerContext* ctx,
         grpc::ByteBuffer* response) override {
    auto who = identify(fedn::Client{}, ctx);
    if (auto st = admit_as(*core_, ctx, "/fedn.ModelService/Upload", who);
        !st.ok())
      return new refused_upload<grpc::ByteBuffer>(st);
    return new upload(core_, response, who.id);
  }

  grpc::ServerWriteReactor<grpc::ByteBuffer>*
  Download(grpc::CallbackServerContext* ctx,
           const grpc::ByteBuffer* req) override {
    caller who;
    if (auto st = admit(*core_, ctx, "/fedn.ModelService/Download", &who);
        !st.ok())
      return new refused_stream<grpc::ByteBuffer>(st);
    return new download(core_, req, who);
  }

private:
  std::shared_ptr<edge_core> core_;
};

} // namespace

std::unique_ptr<grpc::Service>
make_model_service(std::shared_ptr<edge_core> core) {
  return std::make_unique<model_service>(std::move(core));
}

} // namespace rondo::gateway::detail
