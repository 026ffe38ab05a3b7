// Every inspect() round-trips through CAF's binary serializer (the format
// that crosses the middleman), and every record through its protobuf form.

#include "messages/error.hpp"
#include "messages/records_codec.hpp"
#include "messages/type_ids.hpp"

#include <caf/binary_deserializer.hpp>
#include <caf/binary_serializer.hpp>
#include <caf/deep_to_string.hpp>

#include <doctest/doctest.h>

using namespace rondo;

namespace {

round_config sample_config() {
  round_config c;
  c.round_id = "4";
  c.session_id = "sess";
  c.model_id = "m-3";
  c.task = round_task::validation;
  c.round_timeout = 12.5;
  c.buffer_size = 3;
  c.clients_required = 2;
  c.clients_requested = 6;
  c.max_clients = 9;
  c.selected_clients = {"c1", "c2"};
  c.client_settings = R"({"epochs":3})";
  c.aggregator = "fedopt";
  c.aggregator_kwargs = R"({"serveropt":"yogi"})";
  c.delete_models_storage = false;
  c.validate = false;
  c.helper_type = "numpyhelper";
  c.extra = {{"k", "v"}};
  return c;
}

job_record sample_job() {
  return {"job-1", 17, sample_config(), job_status::failed, "why", 1.5e9};
}

round_record sample_round() {
  round_record r;
  r.round_id = "4";
  r.session_id = "sess";
  r.job_id = "job-1";
  r.config = sample_config();
  r.status = round_status::success;
  r.reason = "";
  r.base_model_id = "m-3";
  r.model_id = "m-4";
  r.nr_expected_updates = 5;
  r.nr_required_updates = 2;
  r.nr_aggregated_models = 4;
  r.timeout = 12.5;
  r.time_combination = 1.25;
  r.time_model_load = 0.5;
  r.time_model_aggregation = 0.25;
  r.time_exec_training = 7.0;
  r.num_examples = 400;
  r.clients_selected = {"a", "b", "c", "d", "e"};
  r.clients_accepted = {"a", "b", "c", "d"};
  r.clients_rejected = {{"e", "update tensor '0' holds NaN"}};
  r.clients_silent = {};
  r.combiners = {{"combiner-1", round_status::success, "", "m-4", 400}};
  r.validations = {{"v-1", "m-4", "c1", "corr-1", "sess", "4",
                    R"({"test_accuracy":0.85})", 1.7e9}};
  r.started_at = 1.7e9;
  r.ended_at = 1.7e9 + 12;
  return r;
}

session_record sample_session() {
  return {"sess", R"({"rounds":3})", session_status::running, "", "seed",
          {"1", "2"}, 1.7e9, 0, "first session"};
}

model_record sample_model() {
  return {"m-4", "m-3", "sess", "4", 1.7e9};
}

validation_record sample_validation() {
  return {"v-1", "m-4", "c1", "corr-1", "sess", "4",
          R"({"test_accuracy":0.85})", 1.7e9, "client one"};
}

client_record sample_client() {
  return {"c1", "client-one", true, false, "online", 1.7e9};
}

metric_record sample_metric() {
  return {"x-1", "c1", "m-4", "4", "sess", 3, {{"loss", 0.5}}, 1.7e9};
}

status_record sample_status() {
  return {"st-1",   "Model update completed.", "AUDIT", "MODEL_UPDATE",
          "{}",     "corr-1", "sess",  "extra", "client one", "CLIENT",
          "c1",     "combiner-a", 1.7e9 + 0.25};
}

prediction_record sample_prediction() {
  return {"corr-2", "p1", "m-4", R"({"y": [1, 2]})", "corr-2", "c1",
          1.7e9 + 0.5, "client one"};
}

template <class T>
T binary_round_trip(const T& x) {
  std::vector<char> buf;
  caf::binary_serializer sink{nullptr, buf};
  auto copy = x;
  auto err = sink(copy);
  REQUIRE_MESSAGE(!err, caf::to_string(err));
  T y;
  caf::binary_deserializer source{nullptr, buf};
  auto err2 = source(y);
  REQUIRE_MESSAGE(!err2, caf::to_string(err2));
  return y;
}

template <class T>
T proto_round_trip(const T& x) {
  T y;
  auto err = decode(encode(x), y);
  REQUIRE_MESSAGE(!err, render(err));
  return y;
}

} // namespace

TEST_CASE("inspect: every message type round-trips through CAF") {
  CHECK(binary_round_trip(sample_config()) == sample_config());
  CHECK(binary_round_trip(sample_job()) == sample_job());
  CHECK(binary_round_trip(sample_round()) == sample_round());
  CHECK(binary_round_trip(sample_session()) == sample_session());
  CHECK(binary_round_trip(sample_model()) == sample_model());
  CHECK(binary_round_trip(sample_validation()) == sample_validation());
  CHECK(binary_round_trip(sample_client()) == sample_client());
  CHECK(binary_round_trip(sample_metric()) == sample_metric());
  CHECK(binary_round_trip(sample_status()) == sample_status());
  CHECK(binary_round_trip(sample_prediction()) == sample_prediction());
  auto rej = rejected_update{"c9", "stale"};
  CHECK(binary_round_trip(rej) == rej);
  auto rep = combiner_report{"cb", round_status::failed, "combiner lost", "",
                             0};
  CHECK(binary_round_trip(rep) == rep);
}

TEST_CASE("inspect: records are readable as text") {
  auto text = caf::deep_to_string(sample_model());
  CHECK(text.find("m-4") != std::string::npos);
  CHECK(text.find("m-3") != std::string::npos);
}

TEST_CASE("records codec: every record round-trips through protobuf") {
  CHECK(proto_round_trip(sample_job()) == sample_job());
  CHECK(proto_round_trip(sample_round()) == sample_round());
  CHECK(proto_round_trip(sample_session()) == sample_session());
  CHECK(proto_round_trip(sample_model()) == sample_model());
  CHECK(proto_round_trip(sample_validation()) == sample_validation());
  CHECK(proto_round_trip(sample_client()) == sample_client());
  CHECK(proto_round_trip(sample_metric()) == sample_metric());
  CHECK(proto_round_trip(sample_status()) == sample_status());
  CHECK(proto_round_trip(sample_prediction()) == sample_prediction());
}

TEST_CASE("records codec: a validation and a prediction keep the sender's "
          "name") {
  CHECK(proto_round_trip(sample_validation()).client_name == "client one");
  CHECK(proto_round_trip(sample_prediction()).client_name == "client one");
  CHECK(binary_round_trip(sample_validation()).client_name == "client one");
  model_validation v{"id-1", "corr", "m-3", "sess", "{}", "alice"};
  CHECK(binary_round_trip(v).client_name == "alice");
}

TEST_CASE("records codec: a round record's client lists round-trip at "
          "every length") {
  auto r = sample_round();
  r.clients_selected.clear();
  r.clients_accepted.clear();
  // Ids and reasons of 0 to 299 bytes: one- and two-byte length varints.
  for (size_t i = 0; i < 1000; ++i) {
    auto id = std::string(i % 300, 'a' + static_cast<char>(i % 26));
    r.clients_selected.push_back(id);
    if (i % 3 == 0)
      r.clients_accepted.push_back(id);
    else if (i % 3 == 1)
      r.clients_rejected.push_back({id, std::string(i % 7 == 0 ? 0 : i, 'r')});
    else
      r.clients_silent.push_back(id);
  }
  r.clients_rejected.push_back({"", "no client id"});
  CHECK(proto_round_trip(r) == r);
}

TEST_CASE("records codec: garbage bytes are a corrupt-record error") {
  round_record r;
  auto err = decode("\xff\xff\xff\xff garbage", r);
  REQUIRE(err);
  CHECK(render(err) == "rondo.corrupt: round record is corrupt: not a valid "
                       "protobuf message");
  // A status value past the enum's range is rejected, not cast.
  job_record j = sample_job();
  auto bytes = encode(j);
  job_record ok;
  CHECK(!decode(bytes, ok));
  // Field 4 (status) = 9: tag 0x20, varint 9.
  bytes += std::string{"\x20\x09", 2};
  auto err2 = decode(bytes, ok);
  REQUIRE(err2);
  CHECK(render(err2) == "rondo.corrupt: job record is corrupt: status 9 out "
                        "of range");
}

TEST_CASE("inspect: combiner and controller messages round-trip") {
  client_info info{"id-1", "alice", true, false};
  CHECK(binary_round_trip(info) == info);
  client_task task{"corr", "3", "sess", "m-3", round_task::validation,
                   R"({"round_id":"3"})"};
  CHECK(binary_round_trip(task) == task);
  model_update update{"id-1", "corr", "m-3", "u-9", 120.5, R"({"a":1})"};
  CHECK(binary_round_trip(update) == update);
  model_validation validation{"id-1", "corr", "m-3", "sess",
                              R"({"test_accuracy":0.8})", "alice"};
  CHECK(binary_round_trip(validation) == validation);
  update_verdict verdict{false, "stale update: no round is running"};
  CHECK(binary_round_trip(verdict) == verdict);
  task_cancelled cancelled{"corr", "id-1", "train failed", true};
  CHECK(binary_round_trip(cancelled) == cancelled);
  timer_tick tick{timer_kind::staging_retry, 7, "model-1"};
  CHECK(binary_round_trip(tick) == tick);
  auto activity = binary_round_trip(client_activity{info, true, true});
  CHECK(activity.info == info);
  CHECK(activity.active);
  CHECK(activity.streaming);
  model_blob blob{"m-3", std::make_shared<const std::string>("npz bytes")};
  auto blob2 = binary_round_trip(blob);
  CHECK(blob2 == blob);
  CHECK(blob2.bytes != blob.bytes); // a new buffer on the receiving side
  model_chunk chunk{"m-3", 2, 5, 4242, 0xfeed, "chunk bytes"};
  CHECK(binary_round_trip(chunk) == chunk);
  session_config cfg;
  cfg.session_id = "s";
  cfg.rounds = 3;
  cfg.aggregator = "fedopt";
  cfg.stop_on_failure = true;
  CHECK(binary_round_trip(cfg) == cfg);
  session_report rep{sample_session(), {sample_round()}};
  auto rep2 = binary_round_trip(rep);
  CHECK(rep2.session == rep.session);
  CHECK(rep2.rounds == rep.rounds);
  combiner_round_done done{"combiner-1", 4, sample_round()};
  auto done2 = binary_round_trip(done);
  CHECK(done2.combiner_id == "combiner-1");
  CHECK(done2.epoch == 4);
  CHECK(done2.record == sample_round());
}

TEST_CASE("session config: JSON parsing names the key and the value") {
  auto c = parse_session_config_json(
    R"({"rounds": 10, "round_timeout": "60", "validate": "False",
        "client_settings": {"epochs": 2}, "aggregator": "fedopt",
        "aggregator_kwargs": {"serveropt": "adam"}, "stop_on_failure": true})");
  REQUIRE_MESSAGE(c, (c ? "" : render(c.error())));
  CHECK(c->rounds == 10);
  CHECK(c->round_timeout == 60);
  CHECK(c->validate == false);
  CHECK(c->client_settings == R"({"epochs":2})");
  CHECK(c->stop_on_failure == true);
  auto again = parse_session_config_json(to_json(*c));
  REQUIRE(again);
  CHECK(*again == *c);
  auto bad = parse_session_config_json(R"({"rounds": 0})");
  REQUIRE(!bad);
  CHECK(render(bad.error()) == "rondo.invalid_config: rounds must be >= 1, "
                               "got 0");
  auto unknown = parse_session_config_json(R"({"roundz": 3})");
  REQUIRE(!unknown);
  CHECK(render(unknown.error()) == "rondo.invalid_config: unknown session "
                                   "config key 'roundz'");
  auto timeout = parse_session_config_json(R"({"round_timeout": -3})");
  REQUIRE(!timeout);
  CHECK(render(timeout.error()) == "rondo.invalid_config: round_timeout must "
                                   "be > 0, got -3");
  // Each combiner samples at most clients_requested trainers.
  auto unreachable = parse_session_config_json(
    R"({"clients_required": 9, "clients_requested": 8})");
  REQUIRE(!unreachable);
  CHECK(render(unreachable.error())
        == "rondo.invalid_config: clients_required (9) must not exceed "
           "clients_requested (8): a combiner samples at most "
           "clients_requested trainers");
}
