// The `rondo` executable: every Rondo role and tool is a subcommand.

#include "apps/commands.hpp"

#include <CLI/CLI.hpp>

int main(int argc, char** argv) {
  CLI::App app{"Rondo: a federated-learning round engine speaking FEDn's "
               "client protocol"};
  app.set_version_flag("--version", "rondo " RONDO_VERSION);
  app.require_subcommand(1);
  int exit_code = 0;
  rondo::apps::add_config_command(app, exit_code);
  rondo::apps::add_store_command(app, exit_code);
  rondo::apps::add_aggregate_command(app, exit_code);
  rondo::apps::add_combiner_command(app, exit_code);
  rondo::apps::add_client_command(app, exit_code);
  rondo::apps::add_controller_command(app, exit_code);
  rondo::apps::add_session_command(app, exit_code);
  rondo::apps::add_combiners_command(app, exit_code);
  rondo::apps::add_certs_command(app, exit_code);
  rondo::apps::add_token_command(app, exit_code);
  CLI11_PARSE(app, argc, argv);
  return exit_code;
}
