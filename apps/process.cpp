#include "apps/process.hpp"

#include "messages/error.hpp"
#include "storage/database.hpp"
#include "storage/model_store.hpp"
#include "storage/state_store.hpp"

#include <caf/actor_system_config.hpp>
#include <caf/io/middleman.hpp>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

namespace rondo::apps {

caf::timespan seconds(double x) {
  return std::chrono::duration_cast<caf::timespan>(
    std::chrono::duration<double>(x));
}

sigset_t block_stop_signals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  return signals;
}

void wait_for_stop_signal(sigset_t signals) {
  int sig = 0;
  sigwait(&signals, &sig);
  spdlog::info("received {}, stopping (again to exit at once)",
               sig == SIGINT ? "SIGINT" : "SIGTERM");
  std::thread{[signals] {
    int again = 0;
    sigwait(&signals, &again);
    spdlog::warn("received a second signal, exiting now");
    spdlog::default_logger()->flush();
    std::_Exit(130);
  }}.detach();
}

caf::error write_port_file(const std::string& path, uint16_t port) {
  auto tmp = path + ".tmp";
  {
    std::ofstream out{tmp, std::ios::trunc};
    out << port << "\n";
    out.flush();
    if (!out)
      return caf::make_error(ec::storage_error, "cannot write " + tmp);
  }
  std::error_code err;
  std::filesystem::rename(tmp, path, err);
  if (err)
    return caf::make_error(ec::storage_error, "cannot rename " + tmp + " to "
                                                + path + ": "
                                                + err.message());
  return caf::none;
}

endpoint parse_endpoint(const std::string& text, std::string& problem) {
  auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    problem = "expected host:port, got '" + text + "'";
    return {};
  }
  auto port_text = text.substr(colon + 1);
  char* end = nullptr;
  auto port = std::strtol(port_text.c_str(), &end, 10);
  if (port_text.empty() || *end != '\0' || port < 1 || port > 65535) {
    problem = "port must be 1..65535, got '" + port_text + "' in '" + text
              + "'";
    return {};
  }
  return {text.substr(0, colon), static_cast<uint16_t>(port)};
}

std::string check_middleman_options(double heartbeat_interval,
                                    double connection_timeout) {
  if (!std::isfinite(heartbeat_interval) || heartbeat_interval <= 0)
    return "--heartbeat-interval must be > 0 seconds";
  if (!std::isfinite(connection_timeout)
      || connection_timeout <= heartbeat_interval)
    return "--connection-timeout must be more than --heartbeat-interval";
  return {};
}

std::string check_log_level(const std::string& level) {
  if (spdlog::level::from_str(level) == spdlog::level::off && level != "off")
    return "--log-level must be one of trace, debug, info, warn, error, off";
  return {};
}

void setup_logger(const std::string& name, const std::string& level) {
  spdlog::set_default_logger(spdlog::stderr_color_mt(name));
  spdlog::set_level(spdlog::level::from_str(level));
}

caf::expected<process_stores> open_stores(const std::string& dir) {
  auto db = storage::database::open(dir);
  if (!db)
    return caf::make_error(ec::storage_error,
                           "cannot open database " + dir + ": "
                             + render(db.error()));
  auto models = storage::model_store::open(*db);
  auto state = storage::state_store::open(*db);
  if (!models || !state)
    return caf::make_error(ec::storage_error,
                           "cannot open the stores in " + dir + ": "
                             + render(!models ? models.error()
                                              : state.error()));
  return process_stores{std::move(*models), std::move(*state)};
}

void enable_middleman(caf::actor_system_config& cfg,
                      double heartbeat_interval, double connection_timeout) {
  cfg.load<caf::io::middleman>();
  cfg.set("middleman.heartbeat-interval", seconds(heartbeat_interval));
  cfg.set("middleman.connection-timeout", seconds(connection_timeout));
}

} // namespace rondo::apps
