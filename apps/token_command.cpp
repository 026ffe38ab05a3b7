// `rondo token create|verify`: FEDn-compatible bearer tokens (HS256 JWTs
// with a `role` claim and, optionally, the client they bind to).

#include "apps/commands.hpp"
#include "messages/error.hpp"
#include "security/token.hpp"

#include <CLI/CLI.hpp>

#include <cctype>
#include <chrono>
#include <iostream>
#include <string>

namespace rondo::apps {

namespace {

/// Parses "30d", "12h", "15m", "90s" or "0" (no expiry) into seconds.
/// @returns false (leaving `out`) on anything else.
bool parse_ttl(const std::string& text, std::chrono::seconds& out) {
  if (text.empty())
    return false;
  size_t i = 0;
  int64_t n = 0;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
    if (n > (int64_t{1} << 40))
      return false;
    n = n * 10 + (text[i] - '0');
    ++i;
  }
  if (i == 0)
    return false;
  int64_t unit = 1;
  if (i < text.size()) {
    if (i + 1 != text.size())
      return false;
    switch (text[i]) {
      case 's': unit = 1; break;
      case 'm': unit = 60; break;
      case 'h': unit = 3600; break;
      case 'd': unit = 86400; break;
      default: return false;
    }
  } else if (n != 0) {
    // A bare number other than 0 is ambiguous: ask for a unit.
    return false;
  }
  out = std::chrono::seconds{n * unit};
  return true;
}

struct token_args {
  std::string secret_file;
  std::string role = "client";
  std::string client;
  std::string ttl = "30d";
  std::string token = "-";
};

int create(const token_args& a) {
  security::token_claims claims;
  if (a.role == "client")
    claims.role = security::role::client;
  else if (a.role == "admin")
    claims.role = security::role::admin;
  else {
    std::cerr << "error: --role must be client or admin, got " << a.role
              << "\n";
    return 2;
  }
  std::chrono::seconds ttl{0};
  if (!parse_ttl(a.ttl, ttl)) {
    std::cerr << "error: --ttl must be a number with a unit s, m, h or d "
                 "(e.g. 30d), or 0 for no expiry; got "
              << a.ttl << "\n";
    return 2;
  }
  claims.client = a.client;
  auto secret = security::read_secret_file(a.secret_file);
  if (!secret) {
    std::cerr << "error: " << error_detail(secret.error()) << "\n";
    return 2;
  }
  auto token = security::create_token(*secret, claims, ttl);
  if (!token) {
    std::cerr << "error: " << error_detail(token.error()) << "\n";
    return 1;
  }
  std::cout << *token << "\n";
  return 0;
}

int verify(const token_args& a) {
  auto secret = security::read_secret_file(a.secret_file);
  if (!secret) {
    std::cerr << "error: " << error_detail(secret.error()) << "\n";
    return 2;
  }
  std::string token = a.token;
  if (token == "-") {
    std::getline(std::cin, token);
  }
  while (!token.empty() && std::isspace(static_cast<unsigned char>(token.back())))
    token.pop_back();
  // Accept a whole "Bearer <JWT>" value too.
  if (auto sp = token.find(' '); sp != std::string::npos)
    token = token.substr(sp + 1);
  auto now = security::unix_now();
  auto claims = security::verify_token(token, *secret, now);
  if (!claims) {
    std::cout << "token does NOT verify: " << error_detail(claims.error())
              << "\n";
    return 1;
  }
  std::cout << "signature: ok (HS256)\n"
            << "role: " << to_string(claims->role) << "\n"
            << "client: "
            << (claims->client.empty() ? std::string{"(none: may act as any "
                                                     "client unless the "
                                                     "combiner requires an "
                                                     "identity)"}
                                       : claims->client)
            << "\n";
  if (claims->issued)
    std::cout << "issued: " << security::utc_text(*claims->issued) << "\n";
  if (claims->expires)
    std::cout << "expires: " << security::utc_text(*claims->expires) << " (in "
              << (*claims->expires - now) << " s)\n";
  else
    std::cout << "expires: never\n";
  return 0;
}

} // namespace

void add_token_command(CLI::App& app, int& exit_code) {
  auto a = std::make_shared<token_args>();
  auto* token = app.add_subcommand(
    "token", "FEDn-compatible bearer tokens (HS256 JWT) for the combiner's "
             "client edge");
  token->require_subcommand(1);
  auto* c = token->add_subcommand("create", "Sign a token and print it");
  c->add_option("--secret-file", a->secret_file,
                "File with the HS256 secret (>= 32 bytes), as the combiner's "
                "--auth-secret-file")
    ->required();
  c->add_option("--role", a->role, "client or admin")->capture_default_str();
  c->add_option("--client", a->client,
                "The client id the token may act as (claim client_id); "
                "without it the token names no client");
  c->add_option("--ttl", a->ttl,
                "Lifetime: a number with unit s, m, h or d; 0 = no expiry")
    ->capture_default_str();
  c->callback([a, &exit_code] { exit_code = create(*a); });
  auto* v = token->add_subcommand(
    "verify", "Check a token's signature and expiry and print its claims; "
              "exits 1 when it does not verify");
  v->add_option("--secret-file", a->secret_file, "File with the HS256 secret")
    ->required();
  v->add_option("token", a->token, "The token, or - (default) for stdin");
  v->callback([a, &exit_code] { exit_code = verify(*a); });
}

} // namespace rondo::apps
