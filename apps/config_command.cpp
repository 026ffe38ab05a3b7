#include "apps/commands.hpp"
#include "messages/error.hpp"
#include "messages/round_config.hpp"
#include "model/aggregator.hpp"

#include <CLI/CLI.hpp>

#include <fstream>
#include <iostream>
#include <sstream>

namespace rondo::apps {

void add_config_command(CLI::App& app, int& exit_code) {
  auto* config = app.add_subcommand("config", "Round configs");
  config->require_subcommand(1);
  auto* check = config->add_subcommand(
    "check", "Validate a round config (a JSON object, '-' for stdin) and "
             "print it with every default filled in");
  auto path = std::make_shared<std::string>();
  check->add_option("file", *path, "JSON file, or - for stdin")->required();
  check->callback([path, &exit_code] {
    std::stringstream text;
    if (*path == "-") {
      text << std::cin.rdbuf();
    } else {
      std::ifstream in{*path};
      if (!in) {
        std::cerr << "error: cannot read " << *path << "\n";
        exit_code = 1;
        return;
      }
      text << in.rdbuf();
    }
    auto cfg = parse_round_config_json(text.str());
    if (!cfg) {
      std::cerr << "error: " << render(cfg.error()) << "\n";
      exit_code = 1;
      return;
    }
    // The aggregator and its kwargs are checked as a round would.
    if (auto agg = make_aggregator(cfg->aggregator, cfg->aggregator_kwargs);
        !agg) {
      std::cerr << "error: " << render(agg.error()) << "\n";
      exit_code = 1;
      return;
    }
    std::cout << to_json(*cfg) << "\n";
  });
}

} // namespace rondo::apps
