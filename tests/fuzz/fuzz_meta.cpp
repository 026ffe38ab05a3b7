// libFuzzer target: the JSON a peer sends around a task.
// - Combiner side (gateway/wire.*): a ModelUpdate's `meta`
//   (parse_num_examples) and a ModelValidation's / ModelPrediction's
//   `data` (check_json_object); a ClientAvailableMessage's `data`, the
//   client's roles (messages/combiner_messages.*: parse_roles_json).
// - Client side (client/task_meta.*): a TaskRequest's `data`
//   (parse_task_data), the training code's metadata
//   (parse_training_metadata), validation metrics and prediction output.
//
// Properties beyond "no crash, leak, UB or uncaught exception":
// - rejections are ec::invalid_argument with the documented text prefix;
// - an accepted num_examples is finite and > 0;
// - what the client accepts as training metadata, it wraps into a
//   ModelUpdate meta (make_model_update_meta) from which the combiner
//   reads the same num_examples;
// - parse_metrics's output is a JSON object the combiner accepts.

#include "fuzz_util.hpp"

#include "client/task_meta.hpp"
#include "gateway/wire.hpp"
#include "messages/combiner_messages.hpp"

#include <nlohmann/json.hpp>

#include <cmath>
#include <string>

using namespace rondo;
using rondo::fuzz::check;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text{fuzz::as_view(data, size)};
  // The combiner.
  if (auto n = gateway::parse_num_examples(text))
    check(std::isfinite(*n) && *n > 0, "num_examples is finite and > 0");
  else
    fuzz::check_error(n.error(), ec::invalid_argument, "malformed meta: ");
  if (auto err = gateway::check_json_object(text, "data"))
    fuzz::check_error(err, ec::invalid_argument, "malformed data: ");
  auto roles = parse_roles_json(text);
  auto again = parse_roles_json(make_roles_json(roles));
  check(again.trainer == roles.trainer && again.validator == roles.validator,
        "roles survive make_roles_json");
  // The client.
  for (bool require : {false, true}) {
    if (auto td = client::parse_task_data(text, require)) {
      auto cs = nlohmann::json::parse(td->client_settings, nullptr, false);
      check(cs.is_object(), "client_settings is a JSON object");
    } else {
      fuzz::check_error(td.error(), ec::invalid_argument, "task data ");
    }
  }
  if (auto md = client::parse_training_metadata(text, "fuzz-metadata")) {
    check(std::isfinite(md->num_examples) && md->num_examples > 0,
          "training num_examples is finite and > 0");
    auto meta = client::make_model_update_meta(*md, text,
                                               client::training_timings{});
    auto n = gateway::parse_num_examples(meta);
    if (!n)
      std::fprintf(stderr, "meta: %s\nerror: %s\n", meta.c_str(),
                   render(n.error()).c_str());
    check(static_cast<bool>(n), "the combiner accepts the client's meta");
    check(*n == md->num_examples,
          "the combiner reads the client's num_examples");
  } else {
    fuzz::check_error(md.error(), ec::invalid_argument,
                      "train wrote no valid num_examples in fuzz-metadata: ");
  }
  if (auto m = client::parse_metrics(text, "fuzz-metrics"))
    check(!gateway::check_json_object(*m, "data"),
          "the combiner accepts the client's metrics");
  else
    fuzz::check_error(m.error(), ec::invalid_argument, "validate wrote ");
  if (auto p = client::parse_prediction(text, "fuzz-prediction"))
    check(!nlohmann::json::parse(*p, nullptr, false).is_discarded(),
          "the prediction the client sends is JSON");
  else
    fuzz::check_error(p.error(), ec::invalid_argument, "predict wrote ");
  return 0;
}
