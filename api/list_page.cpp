#include "api/list_page.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <ctime>

namespace rondo::api {

namespace {

/// A header holding a positive integer, else 0 (FEDn's get_limit/get_skip).
size_t positive_header(const request& req, const char* name) {
  auto text = req.header(name);
  if (text.empty() || text.size() > 9
      || !std::all_of(text.begin(), text.end(),
                      [](unsigned char c) { return std::isdigit(c); }))
    return 0;
  return static_cast<size_t>(std::stoul(text));
}

bool matches(const nlohmann::json& item, const request& req) {
  for (auto& [key, want] : req.query) {
    auto i = item.find(key);
    if (i == item.end())
      continue; // not a field of this kind (e.g. a paging parameter)
    auto have = i->is_string() ? i->get<std::string>() : i->dump();
    if (have != want)
      return false;
  }
  return true;
}

} // namespace

nlohmann::json list_page(nlohmann::json items, const request& req,
                         const std::string& default_sort) {
  auto out = nlohmann::json::array();
  for (auto& item : items)
    if (matches(item, req))
      out.push_back(std::move(item));
  auto key = req.header("X-Sort-Key");
  if (key.empty())
    key = default_sort;
  auto order = req.header("X-Sort-Order");
  auto ascending = !order.empty()
                   && (order == "asc" || order == "ASC" || order == "Asc");
  std::stable_sort(out.begin(), out.end(), [&](const auto& x, const auto& y) {
    auto a = x.value(key, nlohmann::json{});
    auto b = y.value(key, nlohmann::json{});
    return ascending ? a < b : b < a;
  });
  auto count = out.size();
  auto skip = std::min(positive_header(req, "X-Skip"), out.size());
  auto limit = positive_header(req, "X-Limit");
  auto end = limit == 0 ? out.size() : std::min(out.size(), skip + limit);
  auto page = nlohmann::json::array();
  for (auto i = skip; i < end; ++i)
    page.push_back(std::move(out[i]));
  return {{"count", count}, {"result", std::move(page)}};
}

std::string iso_time(double unix_seconds) {
  if (unix_seconds <= 0)
    return {};
  auto secs = static_cast<time_t>(std::floor(unix_seconds));
  auto micros = static_cast<int>((unix_seconds - secs) * 1e6);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ",
                tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                tm.tm_min, tm.tm_sec, micros);
  return buf;
}

size_t list_count(const nlohmann::json& items, const request& req) {
  return static_cast<size_t>(std::count_if(
    items.begin(), items.end(),
    [&](const nlohmann::json& item) { return matches(item, req); }));
}

} // namespace rondo::api
