// The upload path's two-pass reading of a fedn.ModelRequest from its wire
// bytes (gateway/wire.hpp: scan_model_request, for_each_data_span), checked
// against protobuf's own parser: for every input, crafted or truncated, the
// scan must accept exactly what `ModelRequest::ParseFromString` accepts and
// read the same id, status and data, however the stream splits the bytes.

#include "gateway/wire.hpp"
#include "messages/error.hpp"

#include "fedn.pb.h"

#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/proto_buffer_reader.h>
#include <grpcpp/support/slice.h>

#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <vector>

using namespace rondo;

namespace {

// Wire-format builders, for ModelRequests protobuf's serializer never writes:
// any field order, repeated and unknown fields, faults.

std::string varint(uint64_t v) {
  std::string out;
  for (; v >= 0x80; v >>= 7)
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
  out.push_back(static_cast<char>(v));
  return out;
}

/// Wire types: 0 varint, 1 fixed64, 2 length-delimited, 3 start group,
/// 4 end group, 5 fixed32.
std::string tag(uint32_t field, uint32_t type) {
  return varint(uint64_t{field} << 3 | type);
}

/// A length-delimited field.
std::string delimited(uint32_t field, const std::string& bytes) {
  return tag(field, 2) + varint(bytes.size()) + bytes;
}

/// A varint field.
std::string number(uint32_t field, uint64_t value) {
  return tag(field, 0) + varint(value);
}

/// 0..255 and then some: every byte value, so a parser that stops at NUL or
/// treats a byte as a varint would show.
std::string binary(size_t n) {
  std::string out;
  for (size_t i = 0; i < n; ++i)
    out.push_back(static_cast<char>((i * 7 + i / 256) & 0xff));
  return out;
}

/// What the gateway reads from one message.
struct scanned {
  caf::error error;
  gateway::model_request_fields fields;
  /// The data as the spans handed it over, concatenated.
  std::string data;
  size_t spans = 0;
};

/// Scans `wire` as the gateway does: a first pass, then (if that passed) a
/// second one over a fresh stream that collects the data spans. The streams
/// yield `block` bytes at a time (-1: all at once).
scanned scan(const std::string& wire, int block) {
  using google::protobuf::io::ArrayInputStream;
  scanned r;
  ArrayInputStream first{wire.data(), static_cast<int>(wire.size()), block};
  r.error = gateway::scan_model_request(first, r.fields);
  if (r.error)
    return r;
  ArrayInputStream second{wire.data(), static_cast<int>(wire.size()), block};
  auto err = gateway::for_each_data_span(second, r.fields,
                                         [&](std::string_view span) {
                                           // No copy: the span lies in the
                                           // message's own bytes.
                                           CHECK(span.data() >= wire.data());
                                           CHECK(span.data() + span.size()
                                                 <= wire.data() + wire.size());
                                           r.data.append(span);
                                           ++r.spans;
                                           return caf::error{};
                                         });
  REQUIRE(!err);
  return r;
}

/// Checks that the scan agrees with protobuf's parser on `wire`, for
/// streams that split it every 1, 2, 3, 7 or 64 bytes or not at all.
/// @returns what protobuf parsed (if it did).
fedn::ModelRequest check_like_protobuf(const std::string& wire) {
  fedn::ModelRequest parsed;
  bool ok = parsed.ParseFromString(wire);
  for (int block : {1, 2, 3, 7, 64, -1}) {
    CAPTURE(block);
    auto r = scan(wire, block);
    CHECK_MESSAGE(!r.error == ok, (r.error ? render(r.error) : "accepted"));
    if (ok && !r.error) {
      CHECK(r.fields.id == parsed.id());
      CHECK(r.fields.status == static_cast<int32_t>(parsed.status()));
      CHECK(r.fields.data_size == parsed.data().size());
      CHECK(r.data == parsed.data());
    }
  }
  return parsed;
}

/// A sender in wire format.
std::string client_bytes(const std::string& name) {
  fedn::Client c;
  c.set_name(name);
  c.set_client_id(name + "-id");
  c.set_role(fedn::CLIENT);
  return c.SerializeAsString();
}

} // namespace

TEST_CASE("model request scan: reads what protobuf's serializer writes") {
  fedn::ModelRequest req;
  *req.mutable_sender() = fedn::Client{};
  req.mutable_sender()->set_name("alice");
  req.mutable_receiver()->set_client_id("combiner");
  req.set_data(binary(3000));
  req.set_id("model-1");
  req.set_status(fedn::IN_PROGRESS);
  auto wire = req.SerializeAsString();
  check_like_protobuf(wire);
  auto r = scan(wire, 7);
  REQUIRE(!r.error);
  CHECK(r.fields.id == "model-1");
  CHECK(r.fields.status == fedn::IN_PROGRESS);
  CHECK(r.data == binary(3000));
  // Serialized in field order, the data precedes id and status.
  CHECK(r.fields.data_offset < wire.find("model-1"));
  // A 7-byte stream hands the data over in many spans.
  CHECK(r.spans >= 3000 / 7);
  // The terminator, and an empty message (all defaults).
  fedn::ModelRequest end;
  end.set_id("model-1");
  end.set_status(fedn::OK);
  check_like_protobuf(end.SerializeAsString());
  auto none = scan("", -1);
  REQUIRE(!none.error);
  CHECK(none.fields.id.empty());
  CHECK(none.fields.status == fedn::OK);
  CHECK(none.fields.data_size == 0);
}

TEST_CASE("model request scan: fields in any order, the last of a repeat "
          "wins, unknown fields are skipped") {
  auto data = binary(1000);
  SUBCASE("reverse order") {
    auto wire = number(5, fedn::IN_PROGRESS) + delimited(4, "m")
                + delimited(3, data);
    auto parsed = check_like_protobuf(wire);
    CHECK(parsed.data() == data);
    auto r = scan(wire, 3);
    CHECK(r.fields.id == "m");
    CHECK(r.fields.status == fedn::IN_PROGRESS);
    CHECK(r.data == data);
  }
  SUBCASE("repeats") {
    auto wire = delimited(3, "decoy") + delimited(4, "old")
                + number(5, fedn::FAILED) + delimited(3, data)
                + delimited(4, "m") + number(5, fedn::IN_PROGRESS);
    check_like_protobuf(wire);
    auto r = scan(wire, 2);
    CHECK(r.fields.id == "m");
    CHECK(r.fields.status == fedn::IN_PROGRESS);
    CHECK(r.data == data);
    // A last, empty data field empties it.
    auto emptied = scan(wire + delimited(3, ""), -1);
    CHECK(emptied.fields.data_size == 0);
    CHECK(emptied.data.empty());
    check_like_protobuf(wire + delimited(3, ""));
  }
  SUBCASE("unknown fields of every wire type, and known numbers with "
          "another wire type") {
    auto group = tag(12, 3) + number(1, 5) + delimited(2, "q") + tag(13, 3)
                 + tag(13, 4) + tag(12, 4);
    auto wire = number(9, 300) + delimited(1, client_bytes("alice"))
                + tag(10, 1) + std::string(8, '\xff') + delimited(3, data)
                + delimited(11, "xyz") + group + tag(14, 5)
                + std::string(4, '\x80')
                // data as a varint, id as fixed32, status length-delimited,
                // sender as a varint: unknown fields to protobuf.
                + number(3, 7) + tag(4, 5) + std::string(4, 'x')
                + delimited(5, "\x03") + number(1, 1)
                + delimited(2, client_bytes("combiner")) + delimited(4, "m")
                + number(5, fedn::IN_PROGRESS) + number(536870911, 1);
    auto parsed = check_like_protobuf(wire);
    CHECK(parsed.data() == data);
    auto r = scan(wire, 1);
    REQUIRE(!r.error);
    CHECK(r.fields.id == "m");
    CHECK(r.fields.status == fedn::IN_PROGRESS);
    CHECK(r.data == data);
  }
  SUBCASE("status values the enum lacks") {
    // Proto3 enums are open; protobuf keeps an int32.
    for (uint64_t v : {uint64_t{4}, uint64_t{77}, (uint64_t{1} << 32) + 1,
                       ~uint64_t{0}}) {
      CAPTURE(v);
      auto wire = delimited(4, "m") + number(5, v);
      check_like_protobuf(wire);
      CHECK(scan(wire, -1).fields.status == static_cast<int32_t>(v));
    }
  }
}

TEST_CASE("model request scan: rejects what protobuf rejects and names the "
          "fault") {
  auto head = delimited(4, "m");
  struct bad_case {
    std::string wire;
    std::string reason;
  };
  std::vector<bad_case> cases{
    {head + tag(3, 2) + varint(100) + "short",
     "field 3 (data) is truncated or malformed at byte 3"},
    {head + delimited(3, "abc").substr(0, 4),
     "field 3 (data) is truncated or malformed"},
    {head + std::string(1, '\0'), "a zero or malformed tag at byte 3"},
    {head + tag(0, 2) + varint(1) + "x", "field number 0"},
    {head + tag(9, 7), "field 9 has the invalid wire type 7"},
    {tag(4, 6) + head, "field 4 (id) has the invalid wire type 6 at byte 0"},
    {head + tag(9, 4), "an end-group tag of field 9 outside a group"},
    {head + tag(9, 3) + number(1, 1), "field 9 is truncated or malformed"},
    {head + tag(9, 3) + tag(8, 4), "field 9 is truncated or malformed"},
    {head + tag(5, 0) + "\x80", "field 5 (status) is truncated or malformed"},
    {head + tag(5, 0) + std::string(10, '\x81') + std::string(1, '\x01'),
     "field 5 (status) is truncated or malformed"},
    {head + tag(9, 1) + "1234567", "field 9 is truncated or malformed"},
    {head + delimited(4, "\xff\xfe"), "field 4 (id) is not UTF-8"},
    {head + delimited(1, "\x0a\x05" "ab"),
     "field 1 (sender) is not a fedn.Client"},
    {head + delimited(2, delimited(2, "\xc3")),
     "field 2 (receiver) is not a fedn.Client"},
  };
  for (auto& c : cases) {
    CAPTURE(c.reason);
    fedn::ModelRequest parsed;
    CHECK(!parsed.ParseFromString(c.wire));
    for (int block : {1, 5, -1}) {
      CAPTURE(block);
      auto r = scan(c.wire, block);
      REQUIRE(r.error);
      CHECK(r.error == ec::invalid_argument);
      auto text = render(r.error);
      CHECK_MESSAGE(text.find("malformed ModelRequest: " + c.reason)
                      != std::string::npos,
                    text);
    }
  }
  // The id read before the fault is kept, to name the model.
  gateway::model_request_fields fields;
  auto wire = cases[0].wire;
  google::protobuf::io::ArrayInputStream in{wire.data(),
                                            static_cast<int>(wire.size())};
  CHECK(gateway::scan_model_request(in, fields));
  CHECK(fields.id == "m");
}

TEST_CASE("model request scan: every truncation of a message is judged as "
          "protobuf judges it") {
  auto group = tag(12, 3) + number(1, 5) + tag(13, 3) + tag(13, 4)
               + tag(12, 4);
  auto wire = number(5, fedn::IN_PROGRESS) + delimited(1, client_bytes("a"))
              + tag(10, 1) + std::string(8, '\x01') + delimited(3, binary(200))
              + group + tag(14, 5) + std::string(4, '\x02')
              + delimited(4, "model-truncated") + number(9, 1ull << 40)
              + delimited(3, binary(150));
  for (size_t n = 0; n <= wire.size(); ++n) {
    CAPTURE(n);
    check_like_protobuf(wire.substr(0, n));
  }
}

TEST_CASE("model request scan: nested groups are limited as protobuf limits "
          "them") {
  for (int depth : {1, 99, 100, 101, 150}) {
    CAPTURE(depth);
    std::string wire = delimited(4, "m");
    for (int i = 0; i < depth; ++i)
      wire += tag(20, 3);
    for (int i = 0; i < depth; ++i)
      wire += tag(20, 4);
    check_like_protobuf(wire);
  }
}

TEST_CASE("model request scan: the data goes over in the spans of a "
          "many-sliced ByteBuffer, and a sink's error stops it") {
  fedn::ModelRequest req;
  req.set_data(binary(10000));
  req.set_id("sliced");
  req.set_status(fedn::IN_PROGRESS);
  auto wire = req.SerializeAsString();
  // Slices cut at odd places: in the tag, in the length, in the data.
  std::vector<grpc::Slice> slices;
  std::vector<size_t> cuts{0, 1, 2, 5, 999, 4000, 4001, wire.size()};
  for (size_t i = 0; i + 1 < cuts.size(); ++i)
    slices.emplace_back(wire.data() + cuts[i], cuts[i + 1] - cuts[i]);
  grpc::ByteBuffer raw{slices.data(), slices.size()};
  gateway::model_request_fields fields;
  {
    grpc::ProtoBufferReader in{&raw};
    REQUIRE(!gateway::scan_model_request(in, fields));
  }
  CHECK(fields.id == "sliced");
  CHECK(fields.status == fedn::IN_PROGRESS);
  CHECK(fields.data_size == 10000);
  std::string got;
  size_t spans = 0;
  {
    grpc::ProtoBufferReader in{&raw};
    auto err = gateway::for_each_data_span(in, fields,
                                           [&](std::string_view span) {
                                             got.append(span);
                                             ++spans;
                                             return caf::error{};
                                           });
    CHECK(!err);
  }
  CHECK(got == binary(10000));
  CHECK(spans == 5);
  // The sink's error ends the pass at once.
  {
    grpc::ProtoBufferReader in{&raw};
    spans = 0;
    auto err = gateway::for_each_data_span(
      in, fields, [&](std::string_view) {
        ++spans;
        return caf::make_error(ec::storage_error, "disk full");
      });
    CHECK(err == ec::storage_error);
    CHECK(spans == 1);
  }
  // A stream shorter than the fields say (not the scanned message).
  {
    auto cut = wire.substr(0, 3000);
    google::protobuf::io::ArrayInputStream in{cut.data(),
                                              static_cast<int>(cut.size())};
    auto err = gateway::for_each_data_span(in, fields,
                                           [](std::string_view) {
                                             return caf::error{};
                                           });
    CHECK(err == ec::invalid_argument);
  }
}
