#include "gateway/wire.hpp"

#include "messages/config_values.hpp"
#include "messages/error.hpp"

#include "fedn.pb.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream.h>
#include <google/protobuf/wire_format_lite.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdio>
#include <ctime>

namespace rondo::gateway {

namespace {

caf::error malformed(const std::string& what, const std::string& detail) {
  return caf::make_error(ec::invalid_argument,
                         "malformed " + what + ": " + detail);
}

using google::protobuf::internal::WireFormatLite;

// fedn.ModelRequest's field numbers (FEDN_WIRE.md).
constexpr int request_sender = 1;
constexpr int request_receiver = 2;
constexpr int request_data = 3;
constexpr int request_id = 4;
constexpr int request_status = 5;

/// "field 3 (data)", or "field 9" for a field ModelRequest lacks.
std::string request_field(int number) {
  auto text = "field " + std::to_string(number);
  switch (number) {
    case request_sender: return text + " (sender)";
    case request_receiver: return text + " (receiver)";
    case request_data: return text + " (data)";
    case request_id: return text + " (id)";
    case request_status: return text + " (status)";
    default: return text;
  }
}

} // namespace

caf::error scan_model_request(google::protobuf::io::ZeroCopyInputStream& raw,
                              model_request_fields& out) {
  google::protobuf::io::CodedInputStream in{&raw};
  out = model_request_fields{};
  for (;;) {
    auto start = in.CurrentPosition();
    auto tag = in.ReadTag();
    // The fault, and where the field (or tag) that has it begins.
    auto bad = [start](const std::string& what) {
      return malformed("ModelRequest",
                       what + " at byte " + std::to_string(start));
    };
    if (tag == 0) {
      // The end of the input, or a literal tag 0 / an unreadable tag, which
      // protobuf rejects.
      if (in.ConsumedEntireMessage())
        return caf::none;
      return bad("a zero or malformed tag");
    }
    auto number = WireFormatLite::GetTagFieldNumber(tag);
    auto type = WireFormatLite::GetTagWireType(tag);
    if (number == 0)
      return bad("field number 0");
    if (type == WireFormatLite::WIRETYPE_END_GROUP)
      return bad("an end-group tag of " + request_field(number)
                 + " outside a group");
    if (type > WireFormatLite::WIRETYPE_FIXED32)
      return bad(request_field(number) + " has the invalid wire type "
                 + std::to_string(type));
    // As in protobuf's generated parser, a known field number with a wire
    // type other than its own is an unknown field (the last branch).
    auto delimited = type == WireFormatLite::WIRETYPE_LENGTH_DELIMITED;
    bool ok;
    if (delimited && number == request_data) {
      int size = 0;
      ok = in.ReadVarintSizeAsInt(&size);
      if (ok) {
        out.data_offset = static_cast<uint64_t>(in.CurrentPosition());
        out.data_size = static_cast<uint64_t>(size);
        ok = in.Skip(size);
      }
    } else if (delimited && number == request_id) {
      ok = WireFormatLite::ReadString(&in, &out.id);
      if (ok
          && !WireFormatLite::VerifyUtf8String(
            out.id.data(), static_cast<int>(out.id.size()),
            WireFormatLite::PARSE, "fedn.ModelRequest.id"))
        return bad(request_field(number) + " is not UTF-8");
    } else if (type == WireFormatLite::WIRETYPE_VARINT
               && number == request_status) {
      uint64_t value = 0;
      ok = in.ReadVarint64(&value);
      // An int32 enum: protobuf keeps the low 32 bits.
      out.status = static_cast<int32_t>(static_cast<uint32_t>(value));
    } else if (delimited
               && (number == request_sender || number == request_receiver)) {
      // A few bytes; protobuf rejects a ModelRequest whose Client does not
      // parse, so parse it, then drop it.
      std::string bytes;
      ok = WireFormatLite::ReadBytes(&in, &bytes);
      if (ok && !fedn::Client{}.ParseFromString(bytes))
        return bad(request_field(number) + " is not a fedn.Client");
    } else {
      ok = WireFormatLite::SkipField(&in, tag);
    }
    if (!ok)
      return bad(request_field(number) + " is truncated or malformed");
  }
}

caf::error
for_each_data_span(google::protobuf::io::ZeroCopyInputStream& in,
                   const model_request_fields& fields,
                   const std::function<caf::error(std::string_view)>& sink) {
  auto short_input = [] {
    return malformed("ModelRequest",
                     "the input ends inside field 3 (data)");
  };
  if (fields.data_size == 0)
    return caf::none;
  if (fields.data_offset > INT_MAX
      || !in.Skip(static_cast<int>(fields.data_offset)))
    return short_input();
  auto left = fields.data_size;
  while (left > 0) {
    const void* data = nullptr;
    int size = 0;
    if (!in.Next(&data, &size))
      return short_input();
    auto n = std::min(left, static_cast<uint64_t>(size));
    if (n == 0)
      continue;
    left -= n;
    if (n < static_cast<uint64_t>(size))
      in.BackUp(static_cast<int>(size - n));
    if (auto err = sink({static_cast<const char*>(data), n}))
      return err;
  }
  return caf::none;
}

caf::expected<double> parse_num_examples(const std::string& meta) {
  if (auto why = json_nesting_problem(meta); !why.empty())
    return malformed("meta", why);
  auto j = nlohmann::json::parse(meta, nullptr, false);
  if (j.is_discarded())
    return malformed("meta", "not JSON");
  if (!j.is_object())
    return malformed("meta", "not a JSON object");
  auto tm = j.find("training_metadata");
  if (tm == j.end())
    return malformed("meta", "training_metadata is missing");
  if (!tm->is_object())
    return malformed("meta", "training_metadata is not an object");
  auto n = tm->find("num_examples");
  if (n == tm->end())
    return malformed("meta", "training_metadata.num_examples is missing");
  if (!n->is_number())
    return malformed("meta", "training_metadata.num_examples is not a "
                             "number: "
                               + n->dump());
  auto x = n->get<double>();
  if (!std::isfinite(x) || x <= 0)
    return malformed("meta", "training_metadata.num_examples must be a "
                             "finite number > 0, got "
                               + n->dump());
  return x;
}

caf::error check_json_object(const std::string& text,
                             const std::string& what) {
  if (auto why = json_nesting_problem(text); !why.empty())
    return malformed(what, why);
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded())
    return malformed(what, "not JSON");
  if (!j.is_object())
    return malformed(what, "not a JSON object");
  return caf::none;
}

std::string fedn_timestamp_now() {
  using namespace std::chrono;
  auto now = system_clock::now();
  auto secs = system_clock::to_time_t(now);
  auto micros
    = duration_cast<microseconds>(now.time_since_epoch()).count() % 1000000;
  std::tm tm{};
  localtime_r(&secs, &tm);
  char buf[64];
  auto n = std::strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S", &tm);
  std::snprintf(buf + n, sizeof(buf) - n, ".%06lld",
                static_cast<long long>(micros));
  return buf;
}

} // namespace rondo::gateway
