#pragma once

// Input checks and small conversions of the FEDn wire protocol that need no
// gRPC: the meta of a ModelUpdate, JSON payloads, time stamps, the fields of
// a ModelRequest read from its wire bytes in place. Kept apart so tests can
// check them directly.

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace google::protobuf::io {
class ZeroCopyInputStream;
} // namespace google::protobuf::io

namespace rondo::gateway {

/// Reads the FedAvg weight from a ModelUpdate's `meta` (FEDN_WIRE:
/// `{"training_metadata": {"num_examples": N, ...}, ...}`).
/// @returns N, a finite number > 0; or `ec::invalid_argument` with a text
///          starting "malformed meta: " that names what is wrong (not JSON,
///          not an object, missing training_metadata or num_examples, not a
///          number, not finite, not > 0, nested deeper than max_json_depth).
caf::expected<double> parse_num_examples(const std::string& meta);

/// Checks that `text` is a JSON object (a validation's metrics, a
/// prediction's output) nested at most max_json_depth levels.
/// @returns `ec::invalid_argument` with a text starting
/// "malformed <what>: ", or none.
caf::error check_json_object(const std::string& text, const std::string& what);

/// The current local time as Python's `str(datetime.now())` prints it
/// ("2024-05-01 13:45:12.123456"), the form FEDn puts in string time stamps.
std::string fedn_timestamp_now();

/// What the first pass over one fedn.ModelRequest in wire format found: its
/// `id` and `status`, and where its `data` lies, not the data itself.
struct model_request_fields {
  /// The `id` field ("" when absent).
  std::string id;
  /// The `status` field as protobuf reads it (0, OK, when absent); proto3
  /// enums are open, so this may be a value fedn.ModelStatus lacks.
  int32_t status = 0;
  /// Offset of the `data` field's bytes from the start of the message.
  uint64_t data_offset = 0;
  /// Size of the `data` field in bytes (0 when absent).
  uint64_t data_size = 0;
};

/// Reads one fedn.ModelRequest (FEDN_WIRE: sender=1, receiver=2, data=3,
/// id=4, status=5) from `in`, a stream over exactly that message, into
/// `out`, with protobuf's CodedInputStream and WireFormatLite, and accepts
/// what `ModelRequest::ParseFromString` accepts: fields in any order, the
/// last of a repeated field wins, unknown fields (and a known field number
/// with another wire type, as protobuf treats it) are skipped, `id` must be
/// UTF-8, `sender` and `receiver` must parse as fedn.Client. The bytes of
/// `data` are skipped, not copied: `for_each_data_span` reads them in a
/// second pass. One leniency remains: CodedInputStream accepts over-long
/// (6 to 10 byte) varint encodings of a tag or length, which no encoder
/// writes and protobuf's generated parser rejects.
/// @param out  reset, then filled; after an error it holds the fields read
///             before the fault (e.g. the id, to name the model).
/// @returns `ec::invalid_argument` with a text starting
///          "malformed ModelRequest: " naming the fault and its byte offset
///          (truncated, bad wire type, field number 0, a stray end-group
///          tag, ...), or none.
caf::error scan_model_request(google::protobuf::io::ZeroCopyInputStream& in,
                              model_request_fields& out);

/// Hands the `data` field that `scan_model_request` located to `sink`
/// without copying it: as the spans `in` (a fresh stream over the same
/// message) yields, so one field may arrive in several pieces. Stops at the
/// first error `sink` returns.
/// @returns `sink`'s error, or `ec::invalid_argument` if `in` ends before
///          the field does (a stream over another message).
caf::error
for_each_data_span(google::protobuf::io::ZeroCopyInputStream& in,
                   const model_request_fields& fields,
                   const std::function<caf::error(std::string_view)>& sink);

} // namespace rondo::gateway
