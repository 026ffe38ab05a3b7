// `rondo aggregate`: aggregate model updates offline, e.g.
//   rondo aggregate --aggregator fedavg -o out.npz base.npz a.npz:120 b.npz:80
// Prints one line per update (accepted/rejected and why) and writes the
// aggregate; exits non-zero if no model was produced.

#include "apps/commands.hpp"
#include "messages/error.hpp"
#include "model/aggregator.hpp"
#include "model/errors.hpp"
#include "model/npz.hpp"

#include <CLI/CLI.hpp>

#include <cstdlib>
#include <iostream>

namespace rondo::apps {

namespace {

struct aggregate_args {
  std::string aggregator = "fedavg";
  std::string kwargs;
  std::string output;
  std::string compression = "stored";
  std::string base;
  std::vector<std::string> updates;
};

// Splits "path:num_examples" at the last ':'.
bool split_update(const std::string& arg, std::string& path, double& n) {
  auto colon = arg.rfind(':');
  if (colon == std::string::npos || colon == 0)
    return false;
  path = arg.substr(0, colon);
  auto text = arg.substr(colon + 1);
  char* end = nullptr;
  n = std::strtod(text.c_str(), &end);
  return !text.empty() && end == text.c_str() + text.size();
}

// Folds one update file into `agg`: straight from the file when every
// member is STORED, else after inflating it into memory.
caf::error add_update_file(aggregator& agg, const std::string& path,
                           double n) {
  auto reader = npz_reader::open_file(path);
  if (!reader)
    return reader.error();
  if ((*reader)->all_stored())
    return agg.add(**reader, n);
  auto m = (*reader)->read_all();
  if (!m)
    return m.error();
  return agg.add(*m, n);
}

int run_aggregate(const aggregate_args& args) {
  auto fail = [](const std::string& text) {
    std::cerr << "error: " << text << "\n";
    return 1;
  };
  npz_options out_opts;
  if (args.compression == "deflate")
    out_opts.compression = npz_compression::deflate;
  else if (args.compression != "stored")
    return fail("--compression must be stored or deflate, got '"
                + args.compression + "'");
  auto agg = make_aggregator(args.aggregator, args.kwargs);
  if (!agg)
    return fail(render(agg.error()));
  auto base = read_npz_file(args.base);
  if (!base)
    return fail("global model: " + render(base.error()));
  if (auto err = (*agg)->begin(*base))
    return fail(render(err));
  for (auto& arg : args.updates) {
    std::string path;
    double n = 0;
    if (!split_update(arg, path, n))
      return fail("update '" + arg + "' is not PATH:NUM_EXAMPLES");
    if (auto err = add_update_file(**agg, path, n))
      std::cout << "rejected " << path << ": " << error_detail(err) << "\n";
    else
      std::cout << "accepted " << path << " n=" << arg.substr(path.size() + 1)
                << "\n";
  }
  auto accepted = (*agg)->accepted();
  auto result = (*agg)->finish();
  if (!result)
    return fail("no model: " + error_detail(result.error()));
  if (auto err = write_npz_file(*result, args.output, out_opts))
    return fail(render(err));
  std::cout << "wrote " << args.output << ": " << args.aggregator << " of "
            << accepted << " of " << args.updates.size() << " updates\n";
  return 0;
}

} // namespace

void add_aggregate_command(CLI::App& app, int& exit_code) {
  auto args = std::make_shared<aggregate_args>();
  auto* cmd = app.add_subcommand(
    "aggregate", "Aggregate model updates (npz) into a new global model, "
                 "printing which updates were accepted or rejected and why");
  cmd->add_option("--aggregator,-a", args->aggregator,
                  "Aggregator name (fedavg, fedopt, ...)")
    ->capture_default_str();
  cmd->add_option("--kwargs", args->kwargs,
                  "aggregator_kwargs as a JSON object, e.g. "
                  "'{\"serveropt\": \"yogi\", \"learning_rate\": 0.01}'");
  cmd->add_option("--output,-o", args->output, "Output npz file")->required();
  cmd->add_option("--compression", args->compression,
                  "Output members: stored (fast) or deflate (FEDn's default)")
    ->capture_default_str();
  cmd->add_option("base", args->base,
                  "The global model the updates were trained from (npz)")
    ->required();
  cmd->add_option("updates", args->updates,
                  "Updates as PATH:NUM_EXAMPLES, e.g. a.npz:120")
    ->required();
  cmd->callback([args, &exit_code] { exit_code = run_aggregate(*args); });
}

} // namespace rondo::apps
