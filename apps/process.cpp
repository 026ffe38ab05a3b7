#include "apps/process.hpp"

#include "messages/error.hpp"

#include <caf/actor_system_config.hpp>
#include <caf/io/middleman.hpp>

#include <spdlog/spdlog.h>

#include <chrono>
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

void enable_middleman(caf::actor_system_config& cfg,
                      double heartbeat_interval, double connection_timeout) {
  cfg.load<caf::io::middleman>();
  cfg.set("middleman.heartbeat-interval", seconds(heartbeat_interval));
  cfg.set("middleman.connection-timeout", seconds(connection_timeout));
}

} // namespace rondo::apps
