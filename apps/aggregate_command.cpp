// `rondo aggregate`: aggregate model updates offline, e.g.
//   rondo aggregate --aggregator fedavg -o out.npz base.npz a.npz:120 b.npz:80
// Prints one line per update (accepted/rejected and why) and writes the
// aggregate; exits non-zero if no model was produced.

#include "apps/commands.hpp"
#include "messages/error.hpp"
#include "model/aggregator.hpp"
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

// One update given on the command line.
struct update_arg {
  std::string path;
  std::string n_text;
  double n = 0;
  caf::error verdict;
};

// At most this many STORED files are folded together (each is an open
// file while its batch runs).
constexpr size_t max_batch = 64;

// Folds the updates into `agg` in command-line order, filling each one's
// verdict. Runs of STORED files go to add_batch, which reads the global
// model's sums once per run instead of once per update; a DEFLATE file is
// added on its own, inflated as it is read (twice: check, then fold).
void add_updates(aggregator& agg, std::vector<update_arg>& updates) {
  std::vector<std::unique_ptr<npz_reader>> readers;
  std::vector<weighted_update> batch;
  std::vector<update_arg*> in_batch;
  auto flush = [&] {
    auto verdicts = agg.add_batch(batch);
    for (size_t i = 0; i < in_batch.size(); ++i)
      in_batch[i]->verdict = std::move(verdicts[i]);
    readers.clear();
    batch.clear();
    in_batch.clear();
  };
  for (auto& u : updates) {
    auto reader = npz_reader::open_file(u.path);
    if (!reader) {
      u.verdict = reader.error();
      continue;
    }
    if ((*reader)->all_stored()) {
      batch.push_back(weighted_update{reader->get(), u.n});
      in_batch.push_back(&u);
      readers.push_back(std::move(*reader));
      if (batch.size() == max_batch)
        flush();
      continue;
    }
    flush(); // keeps the arrival order
    // Checked and folded by two inflating passes over the file, never
    // whole in memory.
    u.verdict = agg.add(**reader, u.n);
  }
  flush();
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
  std::vector<update_arg> updates;
  for (auto& arg : args.updates) {
    update_arg u;
    if (!split_update(arg, u.path, u.n))
      return fail("update '" + arg + "' is not PATH:NUM_EXAMPLES");
    u.n_text = arg.substr(u.path.size() + 1);
    updates.push_back(std::move(u));
  }
  add_updates(**agg, updates);
  for (auto& u : updates) {
    if (u.verdict)
      std::cout << "rejected " << u.path << ": " << error_detail(u.verdict)
                << "\n";
    else
      std::cout << "accepted " << u.path << " n=" << u.n_text << "\n";
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
