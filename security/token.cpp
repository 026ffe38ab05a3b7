#include "security/token.hpp"

#include "messages/error.hpp"

#include <jwt.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iterator>
#include <memory>

namespace rondo::security {

namespace {

/// HS256 wants a key at least as long as its output (RFC 7518, 3.2).
constexpr size_t min_secret_bytes = 32;

struct jwt_deleter {
  void operator()(jwt_t* p) const {
    jwt_free(p);
  }
};

using jwt_ptr = std::unique_ptr<jwt_t, jwt_deleter>;

caf::error unauthenticated(const std::string& why) {
  return caf::make_error(ec::unauthenticated, why);
}

/// A claim as a string; empty when absent or not a string.
std::string string_claim(jwt_t* jwt, const char* name) {
  errno = 0;
  auto* value = jwt_get_grant(jwt, name);
  return value != nullptr ? std::string{value} : std::string{};
}

/// A numeric claim; none when absent (libjwt sets ENOENT).
std::optional<int64_t> int_claim(jwt_t* jwt, const char* name) {
  errno = 0;
  auto value = jwt_get_grant_int(jwt, name);
  if (errno != 0)
    return std::nullopt;
  return static_cast<int64_t>(value);
}


} // namespace

const char* to_string(role r) {
  return r == role::admin ? "admin" : "client";
}

caf::expected<std::string> read_secret_file(const std::string& path) {
  std::ifstream in{path, std::ios::binary};
  if (!in)
    return caf::make_error(ec::invalid_config,
                           "cannot read the secret file " + path + ": "
                             + std::strerror(errno));
  std::string bytes{std::istreambuf_iterator<char>{in},
                    std::istreambuf_iterator<char>{}};
  if (in.bad())
    return caf::make_error(ec::invalid_config,
                           "cannot read the secret file " + path);
  while (!bytes.empty()
         && (bytes.back() == '\n' || bytes.back() == '\r'
             || bytes.back() == ' ' || bytes.back() == '\t'))
    bytes.pop_back();
  if (bytes.size() < min_secret_bytes)
    return caf::make_error(ec::invalid_config,
                           "the secret file " + path + " holds "
                             + std::to_string(bytes.size())
                             + " bytes; HS256 needs at least "
                             + std::to_string(min_secret_bytes));
  return bytes;
}

caf::expected<std::string> create_token(const std::string& secret,
                                        const token_claims& claims,
                                        std::chrono::seconds ttl) {
  if (secret.size() < min_secret_bytes)
    return caf::make_error(ec::invalid_argument,
                           "the secret has " + std::to_string(secret.size())
                             + " bytes; HS256 needs at least "
                             + std::to_string(min_secret_bytes));
  if (ttl.count() < 0)
    return caf::make_error(ec::invalid_argument, "the ttl must be >= 0");
  jwt_t* raw = nullptr;
  if (jwt_new(&raw) != 0)
    return caf::make_error(ec::unspecified, "libjwt: out of memory");
  jwt_ptr jwt{raw};
  auto now = unix_now();
  bool ok = jwt_add_grant(jwt.get(), "role", to_string(claims.role)) == 0
            && jwt_add_grant_int(jwt.get(), "iat", now) == 0;
  if (ok && !claims.client.empty())
    ok = jwt_add_grant(jwt.get(), "client_id", claims.client.c_str()) == 0;
  if (ok && ttl.count() > 0)
    ok = jwt_add_grant_int(jwt.get(), "exp", now + ttl.count()) == 0;
  if (ok)
    ok = jwt_set_alg(jwt.get(), JWT_ALG_HS256,
                     reinterpret_cast<const unsigned char*>(secret.data()),
                     static_cast<int>(secret.size()))
         == 0;
  if (!ok)
    return caf::make_error(ec::unspecified, "libjwt cannot build the token");
  std::unique_ptr<char, decltype(&std::free)> text{jwt_encode_str(jwt.get()),
                                                   &std::free};
  if (!text)
    return caf::make_error(ec::unspecified, "libjwt cannot sign the token");
  return std::string{text.get()};
}

caf::expected<token_claims> verify_token(std::string_view token,
                                         const std::string& secret,
                                         int64_t now) {
  if (token.empty())
    return unauthenticated("empty token");
  // Three base64url parts; anything else is not a compact JWS.
  auto dot1 = token.find('.');
  auto dot2 = dot1 == std::string_view::npos ? dot1 : token.find('.', dot1 + 1);
  if (dot2 == std::string_view::npos
      || token.find('.', dot2 + 1) != std::string_view::npos)
    return unauthenticated("malformed token (not three dot-separated parts)");
  if (dot2 + 1 == token.size())
    return unauthenticated("unsigned token (alg none is refused)");
  std::string text{token};
  jwt_t* raw = nullptr;
  // With a key, libjwt checks the signature with the header's algorithm;
  // the algorithm itself is checked below, so a token cannot choose it.
  auto rc = jwt_decode(&raw, text.c_str(),
                       reinterpret_cast<const unsigned char*>(secret.data()),
                       static_cast<int>(secret.size()));
  jwt_ptr jwt{raw};
  if (rc != 0 || !jwt)
    return unauthenticated(rc == EINVAL
                             ? "bad signature or malformed token"
                             : "malformed token");
  auto alg = jwt_get_alg(jwt.get());
  if (alg != JWT_ALG_HS256)
    return unauthenticated(std::string{"algorithm "} + jwt_alg_str(alg)
                           + " is refused (only HS256)");
  token_claims claims;
  auto role_text = string_claim(jwt.get(), "role");
  if (role_text == "client")
    claims.role = role::client;
  else if (role_text == "admin" || role_text == "controller")
    claims.role = role::admin;
  else
    return unauthenticated(role_text.empty() ? "the token has no role claim"
                                             : "unknown role " + role_text);
  claims.client = string_claim(jwt.get(), "client_id");
  if (claims.client.empty())
    claims.client = string_claim(jwt.get(), "name");
  claims.expires = int_claim(jwt.get(), "exp");
  claims.issued = int_claim(jwt.get(), "iat");
  if (claims.expires && *claims.expires <= now)
    return unauthenticated("expired at " + utc_text(*claims.expires));
  return claims;
}

caf::expected<std::string_view>
token_from_authorization(std::string_view value, std::string_view scheme) {
  while (!value.empty() && value.front() == ' ')
    value.remove_prefix(1);
  if (value.empty())
    return unauthenticated("no authorization metadata");
  auto space = value.find(' ');
  auto given = value.substr(0, space);
  auto lower_equal = [](std::string_view a, std::string_view b) {
    if (a.size() != b.size())
      return false;
    for (size_t i = 0; i < a.size(); ++i) {
      auto x = a[i] >= 'A' && a[i] <= 'Z' ? a[i] - 'A' + 'a' : a[i];
      auto y = b[i] >= 'A' && b[i] <= 'Z' ? b[i] - 'A' + 'a' : b[i];
      if (x != y)
        return false;
    }
    return true;
  };
  // Schemes are case-insensitive (RFC 9110, 11.1).
  if (space == std::string_view::npos || !lower_equal(given, scheme))
    return unauthenticated("expected scheme " + std::string{scheme}
                           + " in authorization metadata");
  auto token = value.substr(space + 1);
  while (!token.empty() && token.front() == ' ')
    token.remove_prefix(1);
  while (!token.empty() && token.back() == ' ')
    token.remove_suffix(1);
  if (token.empty())
    return unauthenticated("authorization metadata has no token after "
                           + std::string{scheme});
  return token;
}

int64_t unix_now() {
  return static_cast<int64_t>(std::time(nullptr));
}

std::string utc_text(int64_t t) {
  auto secs = static_cast<std::time_t>(t);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S UTC", &tm);
  return buf;
}

} // namespace rondo::security
