// Writes seed inputs for fuzz_records: records of every kind as Rondo's
// own encoder writes them (messages/records_codec.cpp), with the values a
// combiner and a controller store in a real session (round ids, model
// UUIDs, a FedAvg round config, client lists, validation metrics).
// Usage: make_record_seeds DIR (the committed corpus/records came from it).

#include "messages/records_codec.hpp"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

using namespace rondo;

namespace {

void write(const std::string& dir, const std::string& name,
           const std::string& bytes) {
  std::ofstream out{dir + "/" + name, std::ios::binary};
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out)
    std::fprintf(stderr, "cannot write %s/%s\n", dir.c_str(), name.c_str());
}

round_config sample_config() {
  round_config cfg;
  cfg.round_id = "3";
  cfg.session_id = "5f0c2a8e-6a55-4f8f-9d1e-2b7c1f7d9a10";
  cfg.model_id = "0b1c3c1e-2f44-4d1a-8f33-4c8e0d4a7e21";
  cfg.round_timeout = 60;
  cfg.buffer_size = 2;
  cfg.clients_required = 2;
  cfg.clients_requested = 4;
  cfg.client_settings = R"({"epochs":1,"batch_size":32,"lr":0.01})";
  cfg.aggregator_kwargs = "{}";
  cfg.extra["rounds"] = "10";
  return cfg;
}

validation_record sample_validation(const std::string& client) {
  validation_record v;
  v.validation_id = "val-" + client;
  v.model_id = "6d2a7f0c-93b1-4a8e-bf0e-1e4c2d7f8a33";
  v.client_id = client;
  v.correlation_id = "corr-" + client;
  v.session_id = "5f0c2a8e-6a55-4f8f-9d1e-2b7c1f7d9a10";
  v.round_id = "3";
  v.metrics_json = R"({"test_accuracy":0.8412,"test_loss":0.4521,)"
                   R"("training_accuracy":0.8533,"training_loss":0.4173})";
  v.received_at = 1764590400.125;
  return v;
}

} // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_record_seeds DIR\n");
    return 2;
  }
  std::string dir = argv[1];
  std::filesystem::create_directories(dir);
  job_record job;
  job.job_id = "job-000017";
  job.seq = 17;
  job.config = sample_config();
  job.status = job_status::success;
  job.enqueued_at = 1764590300.5;
  write(dir, "job", encode(job));

  round_record r;
  r.round_id = "3";
  r.session_id = job.config.session_id;
  r.job_id = job.job_id;
  r.config = job.config;
  r.status = round_status::success;
  r.base_model_id = job.config.model_id;
  r.model_id = "6d2a7f0c-93b1-4a8e-bf0e-1e4c2d7f8a33";
  r.nr_expected_updates = 3;
  r.nr_required_updates = 2;
  r.nr_aggregated_models = 2;
  r.timeout = 60;
  r.time_combination = 0.0123;
  r.time_model_load = 0.004;
  r.time_model_aggregation = 0.0081;
  r.time_exec_training = 2.5;
  r.num_examples = 12000;
  r.clients_selected = {"client-0", "client-1", "client-2"};
  r.clients_accepted = {"client-0", "client-1"};
  r.clients_rejected = {{"client-2", "update tensor '1': shape (784, 10) != "
                                     "global (784, 12)"}};
  r.combiners = {{"combiner-1", round_status::success, "",
                  r.model_id, 12000},
                 {"combiner-2", round_status::failed,
                  "too few clients: 0 of 2 required", "", 0}};
  r.validations = {sample_validation("client-0")};
  r.started_at = 1764590301.0;
  r.ended_at = 1764590304.75;
  write(dir, "round", encode(r));
  round_record failed = r;
  failed.status = round_status::failed;
  failed.reason = "round timed out with 1 of 2 required updates";
  failed.model_id.clear();
  failed.clients_accepted = {"client-0"};
  failed.clients_silent = {"client-1", "client-2"};
  failed.clients_rejected.clear();
  failed.validations.clear();
  write(dir, "round-failed", encode(failed));

  session_record s;
  s.session_id = job.config.session_id;
  s.config_json = R"({"aggregator":"fedavg","aggregator_kwargs":{},)"
                  R"("buffer_size":-1,"client_settings":{},)"
                  R"("clients_required":2,"clients_requested":8,)"
                  R"("grace":60.0,"model_id":"","round_timeout":180.0,)"
                  R"("rounds":10,"session_id":"","stop_on_failure":false,)"
                  R"("validate":true})";
  s.status = session_status::running;
  s.seed_model_id = job.config.model_id;
  s.round_ids = {"1", "2", "3"};
  s.created_at = 1764590000.25;
  write(dir, "session", encode(s));

  model_record m;
  m.model_id = r.model_id;
  m.parent_id = job.config.model_id;
  m.session_id = s.session_id;
  m.round_id = "3";
  m.committed_at = 1764590304.5;
  write(dir, "model", encode(m));

  write(dir, "validation", encode(sample_validation("client-1")));

  client_record c;
  c.client_id = "client-1";
  c.name = "client-1";
  c.trainer = true;
  c.validator = false;
  c.status = "online";
  c.last_seen = 1764590302.0;
  write(dir, "client", encode(c));

  metric_record mr;
  mr.metric_id = "metric-1";
  mr.client_id = "client-1";
  mr.model_id = r.model_id;
  mr.round_id = "3";
  mr.session_id = s.session_id;
  mr.step = 42;
  mr.values = {{"loss", 0.4173}, {"accuracy", 0.8533}};
  mr.received_at = 1764590303.0;
  write(dir, "metric", encode(mr));
  return 0;
}
