#pragma once

// Subcommands of the `rondo` executable. Each add_*_command registers one
// CLI11 subcommand on `app`; its callback runs the command and sets
// `exit_code` (0 on success, 1 on a failure it has reported on stderr).

namespace CLI {
class App;
} // namespace CLI

namespace rondo::apps {

/// `rondo config check FILE`: validate a round config (JSON).
void add_config_command(CLI::App& app, int& exit_code);

/// `rondo store ...`: inspect and edit a local model store.
void add_store_command(CLI::App& app, int& exit_code);

/// `rondo aggregate ...`: aggregate model updates offline.
void add_aggregate_command(CLI::App& app, int& exit_code);

/// `rondo combiner ...`: run a combiner (actors + FEDn gRPC edge).
void add_combiner_command(CLI::App& app, int& exit_code);

/// `rondo client ...`: a FEDn-protocol client running a compute package.
void add_client_command(CLI::App& app, int& exit_code);

/// `rondo controller ...`: run the controller on the CAF middleman.
void add_controller_command(CLI::App& app, int& exit_code);

/// `rondo session start|status|terminate`, `rondo models list|export|prune`
/// and `rondo seed`: talk to a running controller.
void add_session_command(CLI::App& app, int& exit_code);

/// `rondo combiners list|drain|undrain`: a running controller's combiners
/// and scale-in.
void add_combiners_command(CLI::App& app, int& exit_code);

/// `rondo certs init|issue`: a cluster CA and certificates signed by it.
void add_certs_command(CLI::App& app, int& exit_code);

/// `rondo token create|verify`: FEDn-compatible bearer tokens (HS256 JWT).
void add_token_command(CLI::App& app, int& exit_code);

} // namespace rondo::apps
