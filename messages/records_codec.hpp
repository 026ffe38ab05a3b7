#pragma once

// The one place where Rondo's records meet their protobuf on-disk form
// (messages/proto/records.proto). Encoding never fails; decoding returns
// `ec::corrupt` naming the record kind when the bytes are not a valid record.

#include "messages/records.hpp"

#include <caf/expected.hpp>

#include <string>
#include <string_view>

namespace rondo {

std::string encode(const job_record& x);
std::string encode(const round_record& x);
std::string encode(const session_record& x);
std::string encode(const model_record& x);
std::string encode(const validation_record& x);
std::string encode(const client_record& x);
std::string encode(const metric_record& x);
std::string encode(const client_assignment_record& x);
std::string encode(const status_record& x);
std::string encode(const prediction_record& x);

/// Decodes `bytes` into `out`. @returns `ec::corrupt` ("<kind> record is
/// corrupt: ...") if the bytes do not parse or hold an out-of-range value.
caf::error decode(std::string_view bytes, job_record& out);
caf::error decode(std::string_view bytes, round_record& out);
caf::error decode(std::string_view bytes, session_record& out);
caf::error decode(std::string_view bytes, model_record& out);
caf::error decode(std::string_view bytes, validation_record& out);
caf::error decode(std::string_view bytes, client_record& out);
caf::error decode(std::string_view bytes, metric_record& out);
caf::error decode(std::string_view bytes, client_assignment_record& out);
caf::error decode(std::string_view bytes, status_record& out);
caf::error decode(std::string_view bytes, prediction_record& out);

} // namespace rondo
