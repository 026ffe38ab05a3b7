// `rondo combiners list|drain|undrain`: the operator's view of a running
// controller's combiners and scale-in, over its operator API
// (GET /api/v1/combiners/, POST /api/v1/combiners/{id}/drain and
// /undrain), with the flags of `rondo session` (apps/api_client.hpp).

#include "apps/api_client.hpp"
#include "apps/commands.hpp"
#include "messages/error.hpp"

#include <CLI/CLI.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <iomanip>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

namespace rondo::apps {

namespace {

using json = nlohmann::json;

struct combiners_args {
  common_args common;
  std::string combiner_id;
  bool json = false;
};

/// One row of `rondo combiners list`, from the API's combiner JSON.
struct combiner_row {
  std::string id;
  std::string address;
  bool alive = false;
  bool draining = false;
  uint64_t clients_assigned = 0;
};

combiner_row row_of(const json& c) {
  combiner_row r;
  r.id = c.value("combiner_id", std::string{});
  auto host = c.value("address", std::string{});
  auto port = c.value("port", 0);
  r.address = host + ":" + std::to_string(port);
  r.alive = c.value("alive", false);
  r.draining = c.value("draining", false);
  r.clients_assigned = c.value("clients_assigned", uint64_t{0});
  return r;
}

void print_table(const std::vector<combiner_row>& rows) {
  size_t id_w = 11;
  size_t addr_w = 9;
  for (auto& r : rows) {
    id_w = std::max(id_w, r.id.size());
    addr_w = std::max(addr_w, r.address.size());
  }
  std::cout << std::left << std::setw(id_w + 2) << "combiner_id"
            << std::setw(addr_w + 2) << "host:port" << std::setw(7)
            << "alive" << std::setw(10) << "draining"
            << "clients_assigned\n";
  for (auto& r : rows)
    std::cout << std::left << std::setw(id_w + 2) << r.id
              << std::setw(addr_w + 2) << r.address << std::setw(7)
              << (r.alive ? "yes" : "no") << std::setw(10)
              << (r.draining ? "yes" : "no") << r.clients_assigned << "\n";
  std::cout.flush();
}

/// `rondo combiners drain|undrain ID`.
void add_drain_command(CLI::App* combiners, int& exit_code, bool on) {
  auto a = std::make_shared<combiners_args>();
  auto* cmd = combiners->add_subcommand(
    on ? "drain" : "undrain",
    on ? "Drain a combiner (scale-in): no new clients or rounds; a round "
         "that includes it runs to its end, then its clients' task streams "
         "end (\"is draining\") and they ask the controller for another "
         "combiner"
       : "Stop draining a combiner: it is assigned clients and included in "
         "rounds again");
  add_common(cmd, a->common);
  cmd->add_option("combiner_id", a->combiner_id, "Combiner id")->required();
  cmd->add_flag("--json", a->json, "Print the combiner as JSON");
  cmd->callback([a, &exit_code, on] {
    with_controller(a->common, exit_code, [&](api_client& client)
                                             -> caf::error {
      auto c = client.post(with_id("/api/v1/combiners/", a->combiner_id,
                                   on ? "/drain" : "/undrain"),
                           json::object());
      if (!c)
        return c.error();
      if (a->json) {
        std::cout << c->dump(2) << std::endl;
        return caf::none;
      }
      auto r = row_of(*c);
      std::cout << "combiner " << r.id
                << (r.draining ? " is draining" : " is not draining")
                << " (" << r.clients_assigned << " client(s) assigned"
                << (r.alive ? "" : "; not connected") << ")" << std::endl;
      return caf::none;
    });
  });
}

} // namespace

void add_combiners_command(CLI::App& app, int& exit_code) {
  auto* combiners = app.add_subcommand(
    "combiners", "List a running controller's combiners; drain (scale-in) "
                 "and undrain them");
  combiners->require_subcommand(1);

  auto l = std::make_shared<combiners_args>();
  auto* list = combiners->add_subcommand(
    "list", "Every combiner that joined since the controller started: id, "
            "host:port, alive, draining, clients assigned");
  add_common(list, l->common);
  list->add_flag("--json", l->json, "Print the API's JSON");
  list->callback([l, &exit_code] {
    with_controller(l->common, exit_code, [&](api_client& client)
                                             -> caf::error {
      auto xs = list_all(client, "/api/v1/combiners/");
      if (!xs)
        return xs.error();
      if (l->json) {
        std::cout << xs->dump(2) << std::endl;
        return caf::none;
      }
      std::vector<combiner_row> rows;
      for (auto& c : *xs)
        if (c.is_object())
          rows.push_back(row_of(c));
      print_table(rows);
      return caf::none;
    });
  });

  add_drain_command(combiners, exit_code, true);
  add_drain_command(combiners, exit_code, false);
}

} // namespace rondo::apps
