// libFuzzer target: the records codec (messages/records_codec.*), the
// on-disk protobuf form of the state store's records. A damaged database
// (or one written by a newer Rondo) is what reaches it.
//
// The input is decoded as each of the seven record kinds. Properties
// beyond "no crash, leak, UB or uncaught exception":
// - a rejection is ec::corrupt "<kind> record is corrupt: ...";
// - a record that decodes encodes into bytes that decode again and encode
//   to the same message (encode is a fixed point after one decode).
//   Records hold doubles that may be NaN, so messages are compared, not
//   records, in protobuf's deterministic serialization (map entries in key
//   order; encode's order of a metric's values map is not fixed).

#include "fuzz_util.hpp"

#include "messages/records_codec.hpp"

#include "records.pb.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>

#include <google/protobuf/stubs/logging.h>

#include <string>

using namespace rondo;
using rondo::fuzz::check;

namespace {

/// `bytes` (one encoded record) re-serialized deterministically.
template <class Proto>
std::string canonical(const std::string& bytes) {
  Proto msg;
  check(msg.ParseFromString(bytes), "an encoded record parses");
  std::string out;
  {
    google::protobuf::io::StringOutputStream stream{&out};
    google::protobuf::io::CodedOutputStream coded{&stream};
    coded.SetSerializationDeterministic(true);
    msg.SerializeToCodedStream(&coded);
  }
  return out;
}

template <class Record, class Proto>
void try_kind(std::string_view bytes, const char* kind) {
  Record first;
  if (auto err = decode(bytes, first)) {
    fuzz::check_error(err, ec::corrupt,
                      std::string{kind} + " record is corrupt: ");
    return;
  }
  auto once = encode(first);
  Record second;
  auto err = decode(once, second);
  if (err)
    std::fprintf(stderr, "%s record re-decode: %s\n", kind,
                 render(err).c_str());
  check(!err, "an encoded record decodes");
  check(canonical<Proto>(encode(second)) == canonical<Proto>(once),
        "encode(decode(encode(x))) == encode(x)");
}

} // namespace

/// Silences protobuf's log lines about invalid input (invalid UTF-8 in a
/// string field): expected here, and slow at fuzzing speed.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto bytes = fuzz::as_view(data, size);
  try_kind<job_record, rondo::store::JobRecord>(bytes, "job");
  try_kind<round_record, rondo::store::RoundRecord>(bytes, "round");
  try_kind<session_record, rondo::store::SessionRecord>(bytes, "session");
  try_kind<model_record, rondo::store::ModelRecord>(bytes, "model");
  try_kind<validation_record, rondo::store::ValidationRecord>(bytes, "validation");
  try_kind<client_record, rondo::store::ClientRecord>(bytes, "client");
  try_kind<metric_record, rondo::store::MetricRecord>(bytes, "metric");
  return 0;
}
