#include "model/aggregator.hpp"

#include "messages/error.hpp"
#include "model/fedavg.hpp"
#include "model/fedopt.hpp"

#include <nlohmann/json.hpp>

#include <cmath>
#include <mutex>

namespace rondo {

void optimizer_state::reset() {
  m.clear();
  v.clear();
  steps = 0;
}

namespace {

caf::error config_error(const std::string& text) {
  return caf::make_error(ec::invalid_config, text);
}

} // namespace

caf::expected<aggregator_kwargs>
aggregator_kwargs::parse(std::string_view json) {
  aggregator_kwargs out;
  if (json.empty())
    return out;
  auto doc = nlohmann::json::parse(json.begin(), json.end(), nullptr, false);
  if (doc.is_discarded())
    return config_error("aggregator_kwargs is not valid JSON: "
                        + std::string{json});
  if (doc.is_null())
    return out;
  if (!doc.is_object())
    return config_error("aggregator_kwargs must be a JSON object, got "
                        + doc.dump());
  for (auto& [key, val] : doc.items()) {
    if (val.is_number())
      out.values.emplace(key, val.get<double>());
    else if (val.is_string())
      out.values.emplace(key, val.get<std::string>());
    else
      return config_error("aggregator_kwargs '" + key
                          + "' must be a number or a string, got "
                          + val.dump());
  }
  return out;
}

caf::error
aggregator_kwargs::check_keys(const std::string& aggregator,
                              const std::vector<std::string>& known) const {
  for (auto& [key, val] : values) {
    if (std::find(known.begin(), known.end(), key) != known.end())
      continue;
    std::string list;
    for (auto& k : known)
      list += (list.empty() ? "" : ", ") + k;
    return config_error(aggregator + ": unknown aggregator_kwargs key '" + key
                        + "' (known: " + (list.empty() ? "none" : list)
                        + ")");
  }
  return {};
}

caf::expected<double> aggregator_kwargs::number(const std::string& key,
                                                double fallback) const {
  auto i = values.find(key);
  if (i == values.end())
    return fallback;
  auto* x = std::get_if<double>(&i->second);
  if (x == nullptr || !std::isfinite(*x))
    return config_error("aggregator_kwargs '" + key
                        + "' must be a finite number");
  return *x;
}

caf::expected<std::string> aggregator_kwargs::text(const std::string& key,
                                                   std::string fallback) const {
  auto i = values.find(key);
  if (i == values.end())
    return fallback;
  auto* x = std::get_if<std::string>(&i->second);
  if (x == nullptr)
    return config_error("aggregator_kwargs '" + key + "' must be a string");
  return *x;
}

aggregator::~aggregator() = default;

caf::error aggregator::add(const model& update, double num_examples) {
  return add(model_view{update}, num_examples);
}

std::vector<caf::error>
aggregator::add_batch(const std::vector<weighted_update>& updates) {
  std::vector<caf::error> out;
  out.reserve(updates.size());
  for (auto& u : updates)
    out.push_back(add(*u.update, u.num_examples));
  return out;
}

namespace {

struct registry {
  std::mutex mtx;
  std::map<std::string, aggregator_factory> factories;

  registry() {
    factories.emplace("fedavg", [](const aggregator_kwargs& kwargs,
                                   std::shared_ptr<optimizer_state>)
                                  -> caf::expected<std::unique_ptr<aggregator>> {
      if (auto err = kwargs.check_keys("fedavg", {}))
        return err;
      return make_fedavg();
    });
    factories.emplace("fedopt", [](const aggregator_kwargs& kwargs,
                                   std::shared_ptr<optimizer_state> state)
                                  -> caf::expected<std::unique_ptr<aggregator>> {
      auto opts = fedopt_options::from(kwargs);
      if (!opts)
        return opts.error();
      return make_fedopt(*opts, std::move(state));
    });
  }

  static registry& get() {
    static registry instance;
    return instance;
  }
};

} // namespace

caf::error register_aggregator(const std::string& name,
                               aggregator_factory factory) {
  auto& reg = registry::get();
  std::lock_guard<std::mutex> guard{reg.mtx};
  if (!reg.factories.emplace(name, std::move(factory)).second)
    return caf::make_error(ec::already_exists,
                           "aggregator '" + name + "' is already registered");
  return {};
}

std::vector<std::string> aggregator_names() {
  auto& reg = registry::get();
  std::lock_guard<std::mutex> guard{reg.mtx};
  std::vector<std::string> out;
  for (auto& [name, factory] : reg.factories)
    out.push_back(name);
  return out;
}

caf::expected<std::unique_ptr<aggregator>>
make_aggregator(const std::string& name, std::string_view kwargs_json,
                std::shared_ptr<optimizer_state> state) {
  aggregator_factory factory;
  {
    auto& reg = registry::get();
    std::lock_guard<std::mutex> guard{reg.mtx};
    auto i = reg.factories.find(name);
    if (i == reg.factories.end()) {
      std::string known;
      for (auto& [key, f] : reg.factories)
        known += (known.empty() ? "" : ", ") + key;
      return config_error("unknown aggregator '" + name + "' (known: " + known
                          + ")");
    }
    factory = i->second;
  }
  auto kwargs = aggregator_kwargs::parse(kwargs_json);
  if (!kwargs)
    return kwargs.error();
  if (!state)
    state = std::make_shared<optimizer_state>();
  return factory(*kwargs, std::move(state));
}

} // namespace rondo
