#pragma once

// FEDn's listing conventions for the REST v1 routes: the paging and sort
// headers (X-Limit, X-Skip, X-Sort-Key, X-Sort-Order), the query filters
// (a field's value, dotted for nested fields: `sender.name=c1`) and the
// `{"count": N, "result": [...]}` answer. Pure functions over JSON views, so
// that they are tested without a server.

#include <caf/expected.hpp>
#include <nlohmann/json_fwd.hpp>

#include <cstddef>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace rondo::api {

/// How to page and sort a listing, from FEDn's headers.
struct page_request {
  /// X-Limit: at most this many results; 0 (the default, and FEDn's for a
  /// missing header) means all.
  size_t limit = 0;
  /// X-Skip: results to skip first. Default 0.
  size_t skip = 0;
  /// X-Sort-Key: the field to sort by; empty sorts by `committed_at` (as
  /// FEDn's stores do).
  std::string sort_key;
  /// X-Sort-Order: "asc" or "desc" (any case); default descending, as
  /// FEDn's.
  bool descending = true;
};

/// Parses the paging headers; `header` looks one up by name ("" when
/// absent).
/// @returns the request, or ec::invalid_argument naming the header and the
///          value ("X-Limit must be a whole number >= 0, got 'abc'").
template <class HeaderLookup>
caf::expected<page_request> parse_paging(HeaderLookup&& header);

/// The same, from the header values themselves.
caf::expected<page_request> parse_paging_values(const std::string& limit,
                                                const std::string& skip,
                                                const std::string& sort_key,
                                                const std::string& order);

/// One record of a listing: its JSON view and the time it sorts by when no
/// X-Sort-Key is given (unix seconds). The view is held by pointer so that
/// this header needs only json_fwd.hpp.
struct listed {
  std::shared_ptr<const nlohmann::json> view;
  double committed_at = 0;
};

/// A listing item of `view` sorting at `committed_at`.
listed make_listed(nlohmann::json view, double committed_at);

/// Query parameter names a listing accepts besides its views' fields, and
/// the field each stands for (e.g. APIClient's "sessionId" for
/// "session_id").
using filter_aliases = std::map<std::string, std::string>;

/// Keeps the items whose fields equal every filter. A filter's key is a
/// field of the view (dotted for nested ones, e.g. "sender.name") or an
/// alias; its value matches a string field by equality, a number by value,
/// a boolean as "true"/"false" (any case) and a null field as "null" (as
/// FEDn's stores parse query values).
/// @returns the kept items, or ec::invalid_argument naming a filter that
///          is not a field of `kind` (e.g. "unknown filter 'foo' for
///          models").
caf::expected<std::vector<listed>>
apply_filters(std::vector<listed> items,
              const std::map<std::string, std::string>& filters,
              const std::string& kind, const filter_aliases& aliases = {});

/// Sorts (by X-Sort-Key, then committed_at, both in X-Sort-Order), skips
/// and limits. @returns the page, or ec::invalid_argument naming
/// X-Sort-Key when its field is not in the views.
caf::expected<std::vector<nlohmann::json>>
sort_and_page(std::vector<listed> items, const page_request& page,
              const std::string& kind);

/// `{"count": filtered count, "result": page}`: filters, then sorts and
/// pages (FEDn's count is of every match, not of the page).
caf::expected<nlohmann::json>
list_answer(std::vector<listed> items,
            const std::map<std::string, std::string>& filters,
            const page_request& page, const std::string& kind,
            const filter_aliases& aliases = {});

template <class HeaderLookup>
caf::expected<page_request> parse_paging(HeaderLookup&& header) {
  return parse_paging_values(header("X-Limit"), header("X-Skip"),
                             header("X-Sort-Key"), header("X-Sort-Order"));
}

} // namespace rondo::api
