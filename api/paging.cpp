#include "api/paging.hpp"

#include "messages/config_values.hpp"
#include "messages/error.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <cstdlib>

namespace rondo::api {

namespace {

using json = nlohmann::json;

caf::expected<size_t> whole_number(const char* header,
                                   const std::string& raw) {
  auto text = trim(raw);
  if (text.empty())
    return size_t{0};
  bool digits = text.size() <= 18
                && std::all_of(text.begin(), text.end(), [](unsigned char c) {
                     return std::isdigit(c) != 0;
                   });
  if (!digits)
    return caf::make_error(ec::invalid_argument,
                           std::string{header}
                             + " must be a whole number >= 0, got "
                             + rondo::quoted(raw));
  return static_cast<size_t>(std::strtoull(text.c_str(), nullptr, 10));
}

// The field at a dotted path, or nullptr.
const json* field(const json& view, const std::string& path) {
  const json* at = &view;
  size_t begin = 0;
  while (true) {
    auto dot = path.find('.', begin);
    auto name = path.substr(begin, dot == std::string::npos
                                      ? std::string::npos
                                      : dot - begin);
    if (!at->is_object())
      return nullptr;
    auto i = at->find(name);
    if (i == at->end())
      return nullptr;
    at = &*i;
    if (dot == std::string::npos)
      return at;
    begin = dot + 1;
  }
}

bool matches(const json& value, const std::string& wanted) {
  if (value.is_null())
    return ascii_lower(wanted) == "null";
  if (value.is_string())
    return value.get<std::string>() == wanted;
  if (value.is_boolean())
    return ascii_lower(wanted) == (value.get<bool>() ? "true" : "false");
  if (value.is_number()) {
    char* end = nullptr;
    auto x = std::strtod(wanted.c_str(), &end);
    return !wanted.empty() && end && *end == '\0'
           && x == value.get<double>();
  }
  return false;
}

// Orders two values of a sort field: numbers by value, everything else by
// its JSON text (strings lexically); null first.
int compare(const json* x, const json* y) {
  auto rank = [](const json* v) { return !v || v->is_null() ? 0 : 1; };
  if (rank(x) != rank(y))
    return rank(x) < rank(y) ? -1 : 1;
  if (rank(x) == 0)
    return 0;
  if (x->is_number() && y->is_number()) {
    auto a = x->get<double>();
    auto b = y->get<double>();
    return a < b ? -1 : (b < a ? 1 : 0);
  }
  auto a = x->is_string() ? x->get<std::string>() : x->dump();
  auto b = y->is_string() ? y->get<std::string>() : y->dump();
  return a.compare(b) < 0 ? -1 : (a == b ? 0 : 1);
}

} // namespace

listed make_listed(json view, double committed_at) {
  return {std::make_shared<const json>(std::move(view)), committed_at};
}

caf::expected<page_request> parse_paging_values(const std::string& limit,
                                                const std::string& skip,
                                                const std::string& sort_key,
                                                const std::string& order) {
  page_request out;
  auto l = whole_number("X-Limit", limit);
  if (!l)
    return l.error();
  auto s = whole_number("X-Skip", skip);
  if (!s)
    return s.error();
  out.limit = *l;
  out.skip = *s;
  out.sort_key = trim(sort_key);
  auto o = ascii_lower(trim(order));
  if (o == "asc")
    out.descending = false;
  else if (o.empty() || o == "desc")
    out.descending = true;
  else
    return caf::make_error(ec::invalid_argument,
                           "X-Sort-Order must be 'asc' or 'desc', got "
                             + rondo::quoted(order));
  return out;
}

caf::expected<std::vector<listed>>
apply_filters(std::vector<listed> items,
              const std::map<std::string, std::string>& filters,
              const std::string& kind, const filter_aliases& aliases) {
  for (auto& [key, wanted] : filters) {
    auto alias = aliases.find(key);
    auto path = alias == aliases.end() ? key : alias->second;
    // A field every view of the kind has (null when unset); with no items
    // there is nothing to check the name against, and nothing to keep.
    if (!items.empty() && !field(*items.front().view, path))
      return caf::make_error(ec::invalid_argument,
                             "unknown filter " + rondo::quoted(key) + " for "
                               + kind);
    items.erase(std::remove_if(items.begin(), items.end(),
                               [&](const listed& x) {
                                 auto* v = field(*x.view, path);
                                 return !v || !matches(*v, wanted);
                               }),
                items.end());
  }
  return items;
}

caf::expected<std::vector<json>>
sort_and_page(std::vector<listed> items, const page_request& page,
              const std::string& kind) {
  auto key = page.sort_key == "committed_at" ? std::string{} : page.sort_key;
  if (!key.empty() && !items.empty() && !field(*items.front().view, key))
    return caf::make_error(ec::invalid_argument,
                           "X-Sort-Key: " + kind + " have no field "
                             + rondo::quoted(key));
  auto sign = page.descending ? -1 : 1;
  std::stable_sort(items.begin(), items.end(),
                   [&](const listed& x, const listed& y) {
                     if (!key.empty())
                       if (auto c = compare(field(*x.view, key),
                                            field(*y.view, key)))
                         return sign * c < 0;
                     if (x.committed_at == y.committed_at)
                       return false;
                     return (x.committed_at < y.committed_at)
                            != page.descending;
                   });
  std::vector<json> out;
  for (size_t i = page.skip; i < items.size(); ++i) {
    if (page.limit > 0 && out.size() >= page.limit)
      break;
    out.push_back(*items[i].view);
  }
  return out;
}

caf::expected<json>
list_answer(std::vector<listed> items,
            const std::map<std::string, std::string>& filters,
            const page_request& page, const std::string& kind,
            const filter_aliases& aliases) {
  auto kept = apply_filters(std::move(items), filters, kind, aliases);
  if (!kept)
    return kept.error();
  auto count = kept->size();
  auto result = sort_and_page(std::move(*kept), page, kind);
  if (!result)
    return result.error();
  return json{{"count", count}, {"result", std::move(*result)}};
}

} // namespace rondo::api
