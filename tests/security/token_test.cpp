// Bearer tokens: what `rondo token create` signs, the combiner's edge
// verifies; unsigned, foreign-algorithm, badly signed and expired tokens
// are refused with the reason.

#include "messages/error.hpp"
#include "security/token.hpp"

#include <doctest/doctest.h>

#include <jwt.h>

#include <cstdlib>
#include <string>

using namespace rondo;
using namespace rondo::security;

namespace {

const std::string secret = "0123456789abcdef0123456789abcdef-test";
const std::string other_secret = "ffffffffffffffffffffffffffffffff-other";

std::string b64url(const std::string& in) {
  static const char* tbl
    = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    auto n = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8)
             | uint8_t(in[i + 2]);
    for (int s : {18, 12, 6, 0})
      out.push_back(tbl[(n >> s) & 63]);
  }
  if (i + 1 == in.size()) {
    auto n = uint8_t(in[i]) << 16;
    out.push_back(tbl[(n >> 18) & 63]);
    out.push_back(tbl[(n >> 12) & 63]);
  } else if (i + 2 == in.size()) {
    auto n = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8);
    out.push_back(tbl[(n >> 18) & 63]);
    out.push_back(tbl[(n >> 12) & 63]);
    out.push_back(tbl[(n >> 6) & 63]);
  }
  return out;
}

/// A token signed through libjwt with any algorithm and raw claims.
std::string signed_with(jwt_alg_t alg, const std::string& key,
                        const std::string& claims_json) {
  jwt_t* jwt = nullptr;
  REQUIRE(jwt_new(&jwt) == 0);
  REQUIRE(jwt_add_grants_json(jwt, claims_json.c_str()) == 0);
  REQUIRE(jwt_set_alg(jwt, alg,
                      reinterpret_cast<const unsigned char*>(key.data()),
                      static_cast<int>(key.size()))
          == 0);
  char* text = jwt_encode_str(jwt);
  REQUIRE(text != nullptr);
  std::string result{text};
  std::free(text);
  jwt_free(jwt);
  return result;
}

bool is(const caf::error& err, ec code) {
  return err.category() == caf::atom("rondo")
         && static_cast<ec>(err.code()) == code;
}

} // namespace

TEST_CASE("token: create and verify round trip") {
  token_claims in;
  in.role = role::client;
  in.client = "c0";
  auto token = create_token(secret, in, std::chrono::hours(1));
  REQUIRE(token);
  auto now = unix_now();
  auto out = verify_token(*token, secret, now);
  REQUIRE(out);
  CHECK(out->role == role::client);
  CHECK(out->client == "c0");
  REQUIRE(out->expires);
  CHECK(*out->expires >= now + 3599);
  CHECK(*out->expires <= now + 3601);
  REQUIRE(out->issued);
  // No ttl: no exp claim, valid far in the future.
  in.role = role::admin;
  in.client.clear();
  auto forever = create_token(secret, in, std::chrono::seconds(0));
  REQUIRE(forever);
  auto f = verify_token(*forever, secret, now + 100LL * 365 * 86400);
  REQUIRE(f);
  CHECK(f->role == role::admin);
  CHECK(f->client.empty());
  CHECK(!f->expires);
  // A short secret is refused at signing.
  CHECK(!create_token("short", in, std::chrono::seconds(0)));
}

TEST_CASE("token: a bad signature is refused") {
  token_claims in;
  auto token = create_token(other_secret, in, std::chrono::hours(1));
  REQUIRE(token);
  auto out = verify_token(*token, secret, unix_now());
  REQUIRE(!out);
  CHECK(is(out.error(), ec::unauthenticated));
  // A tampered payload (role upgraded) fails too.
  auto good = create_token(secret, in, std::chrono::hours(1));
  REQUIRE(good);
  auto dot1 = good->find('.');
  auto dot2 = good->find('.', dot1 + 1);
  auto forged = good->substr(0, dot1 + 1)
                + b64url(R"({"role":"admin"})") + good->substr(dot2);
  CHECK(!verify_token(forged, secret, unix_now()));
  CHECK(!verify_token("not a token", secret, unix_now()));
  CHECK(!verify_token("", secret, unix_now()));
}

TEST_CASE("token: an expired token is refused, naming the time") {
  auto now = unix_now();
  auto token = signed_with(JWT_ALG_HS256, secret,
                           R"({"role":"client","exp":)"
                             + std::to_string(now - 10) + "}");
  auto out = verify_token(token, secret, now);
  REQUIRE(!out);
  CHECK(is(out.error(), ec::unauthenticated));
  CHECK(error_detail(out.error()).find("expired at") != std::string::npos);
  // The same token before its exp verifies.
  CHECK(verify_token(token, secret, now - 20));
}

TEST_CASE("token: alg none and HS512 are refused") {
  auto payload = b64url(R"({"role":"admin"})");
  auto none = b64url(R"({"alg":"none","typ":"JWT"})") + "." + payload + ".";
  auto out = verify_token(none, secret, unix_now());
  REQUIRE(!out);
  CHECK(is(out.error(), ec::unauthenticated));
  // alg none with some signature appended.
  auto none_sig = none + "AAAA";
  CHECK(!verify_token(none_sig, secret, unix_now()));
  // Correctly signed with the right secret, but HS512.
  auto hs512 = signed_with(JWT_ALG_HS512, secret, R"({"role":"admin"})");
  auto h = verify_token(hs512, secret, unix_now());
  REQUIRE(!h);
  CHECK(error_detail(h.error()).find("HS512") != std::string::npos);
  // And HS256 with the same claims is fine.
  CHECK(verify_token(signed_with(JWT_ALG_HS256, secret, R"({"role":"admin"})"),
                     secret, unix_now()));
}

TEST_CASE("token: FEDn controller role is admin, identity claims") {
  auto now = unix_now();
  auto c = verify_token(signed_with(JWT_ALG_HS256, secret,
                                    R"({"role":"controller"})"),
                        secret, now);
  REQUIRE(c);
  CHECK(c->role == role::admin);
  auto n = verify_token(signed_with(JWT_ALG_HS256, secret,
                                    R"({"role":"client","name":"c7"})"),
                        secret, now);
  REQUIRE(n);
  CHECK(n->client == "c7");
  auto both = verify_token(
    signed_with(JWT_ALG_HS256, secret,
                R"({"role":"client","name":"c7","client_id":"id-7"})"),
    secret, now);
  REQUIRE(both);
  CHECK(both->client == "id-7");
  CHECK(!verify_token(signed_with(JWT_ALG_HS256, secret,
                                  R"({"role":"root"})"),
                      secret, now));
  CHECK(!verify_token(signed_with(JWT_ALG_HS256, secret, R"({"x":1})"),
                      secret, now));
}

TEST_CASE("token: authorization scheme parsing") {
  auto t = token_from_authorization("Bearer abc.def.ghi", "Bearer");
  REQUIRE(t);
  CHECK(*t == "abc.def.ghi");
  auto lower = token_from_authorization("bearer abc", "Bearer");
  REQUIRE(lower);
  CHECK(*lower == "abc");
  auto custom = token_from_authorization("Token xyz", "Token");
  REQUIRE(custom);
  CHECK(*custom == "xyz");
  for (auto bad : {"", "Bearer", "Bearer ", "Token abc", "abc.def.ghi"}) {
    auto r = token_from_authorization(bad, "Bearer");
    CHECK_MESSAGE(!r, bad);
    if (!r)
      CHECK(is(r.error(), ec::unauthenticated));
  }
}
