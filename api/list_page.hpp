#pragma once

// FEDn's list paging for the client, combiner and package routes: the
// X-Limit, X-Skip, X-Sort-Key and X-Sort-Order headers
// (fedn/network/api/v1/shared.py get_typed_list_headers) and equality
// filters from the query string. (Branch `rest` writes the general paging
// helper, api/paging.*; this small one serves these routes until then.)

#include "api/http_server.hpp"

#include <nlohmann/json_fwd.hpp>

#include <string>

namespace rondo::api {

/// Filters `items` (a JSON array of objects) by every query parameter that
/// names a field (string fields compare as text, others by their JSON
/// text), sorts them by X-Sort-Key (default `default_sort`) in X-Sort-Order
/// ("asc", else descending, as FEDn), skips X-Skip and keeps X-Limit (0:
/// all). @returns FEDn's `{"count": <matches before paging>, "result":
/// [...]}`.
nlohmann::json list_page(nlohmann::json items, const request& req,
                         const std::string& default_sort);

/// Unix seconds as FEDn's API shows times: ISO 8601 in UTC,
/// "2026-12-06T14:25:19.123456Z"; "" for 0 (never).
std::string iso_time(double unix_seconds);

/// The number of `items` matching the query's filters, as `list_page`.
size_t list_count(const nlohmann::json& items, const request& req);

} // namespace rondo::api
