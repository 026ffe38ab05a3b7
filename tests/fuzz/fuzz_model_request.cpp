// libFuzzer target: the upload path's two-pass reading of a
// fedn.ModelRequest from its wire bytes (gateway/wire.*:
// scan_model_request, then for_each_data_span over a fresh stream), with
// the input split into stream blocks of several sizes.
//
// Properties beyond "no crash, leak or UB" (differential against
// protobuf's generated parser, as tests/gateway/model_request_scan_test
// checks for crafted inputs):
// - what ModelRequest::ParseFromArray accepts, the scan accepts, with the
//   same id, status and data, whatever the block size;
// - what the scan accepts and protobuf rejects uses the documented
//   leniency only (a tag or length varint of 6 to 10 bytes);
// - a rejection is ec::invalid_argument "malformed ModelRequest: ...";
// - the data spans lie inside the input and are handed over in order.

#include "fuzz_util.hpp"

#include "gateway/wire.hpp"

#include "fedn.pb.h"

#include <google/protobuf/io/zero_copy_stream_impl_lite.h>

#include <google/protobuf/stubs/logging.h>

#include <string>

using namespace rondo;
using rondo::fuzz::check;

namespace {

/// Reads a varint at `pos`; sets `len` to its byte count. False if the
/// input ends first or it runs past 10 bytes.
bool varint(std::string_view in, size_t& pos, uint64_t& value, size_t& len) {
  value = 0;
  for (len = 1; pos < in.size() && len <= 10; ++len) {
    auto b = static_cast<uint8_t>(in[pos++]);
    value |= uint64_t{b & 0x7fu} << (7 * (len - 1));
    if ((b & 0x80) == 0)
      return true;
  }
  return false;
}

/// True if a tag or a length in `in` (fields of a message, groups
/// included) takes more than 5 bytes: the one leniency scan_model_request
/// documents. Stops at the first fault.
bool uses_long_varint(std::string_view in, size_t& pos, int depth) {
  while (pos < in.size()) {
    uint64_t tag = 0, n = 0;
    size_t len = 0, nlen = 0;
    if (!varint(in, pos, tag, len))
      return false;
    if (len > 5)
      return true;
    switch (tag & 7) {
      case 0:
        if (!varint(in, pos, n, nlen))
          return false;
        break;
      case 1: pos += 8; break;
      case 5: pos += 4; break;
      case 2:
        if (!varint(in, pos, n, nlen))
          return false;
        if (nlen > 5)
          return true;
        if (n > in.size() - std::min(pos, in.size()))
          return false;
        pos += n;
        break;
      case 3:
        if (depth > 100 || uses_long_varint(in, pos, depth + 1))
          return true;
        break;
      case 4:
        return false; // end of this group (or a fault)
      default: return false;
    }
  }
  return false;
}

struct scanned {
  caf::error error;
  gateway::model_request_fields fields;
  std::string data;
};

scanned scan(std::string_view wire, int block) {
  using google::protobuf::io::ArrayInputStream;
  scanned r;
  ArrayInputStream first{wire.data(), static_cast<int>(wire.size()), block};
  r.error = gateway::scan_model_request(first, r.fields);
  if (r.error) {
    fuzz::check_error(r.error, ec::invalid_argument,
                      "malformed ModelRequest: ");
    return r;
  }
  check(r.fields.data_offset + r.fields.data_size <= wire.size(),
        "the data field lies inside the message");
  ArrayInputStream second{wire.data(), static_cast<int>(wire.size()), block};
  auto err = gateway::for_each_data_span(
    second, r.fields, [&](std::string_view span) -> caf::error {
      check(span.data() >= wire.data()
              && span.data() + span.size() <= wire.data() + wire.size(),
            "a data span lies in the message's own bytes");
      check(span.data()
              == wire.data() + r.fields.data_offset + r.data.size(),
            "data spans come in order, without gaps");
      r.data.append(span);
      return caf::none;
    });
  check(!err, "for_each_data_span succeeds after the scan did");
  check(r.data.size() == r.fields.data_size, "the spans hold data_size bytes");
  return r;
}

} // namespace

/// Silences protobuf's log lines about invalid input (invalid UTF-8 in a
/// string field): expected here, and slow at fuzzing speed.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > (1u << 20))
    return 0;
  auto wire = fuzz::as_view(data, size);
  fedn::ModelRequest parsed;
  bool ok = parsed.ParseFromArray(data, static_cast<int>(size));
  for (int block : {-1, 1, 7}) {
    auto r = scan(wire, block);
    if (ok) {
      check(!r.error, "the scan accepts what protobuf accepts");
      check(r.fields.id == parsed.id(), "same id as protobuf");
      check(r.fields.status == static_cast<int32_t>(parsed.status()),
            "same status as protobuf");
      check(r.data == parsed.data(), "same data as protobuf");
    } else if (!r.error) {
      size_t pos = 0;
      check(uses_long_varint(wire, pos, 0),
            "the scan accepts what protobuf rejects only for an over-long "
            "tag or length varint");
    }
  }
  return 0;
}
