#include "security/listen_policy.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>

namespace rondo::security {

std::string unbracketed(const std::string& host) {
  if (host.size() > 2 && host.front() == '[' && host.back() == ']')
    return host.substr(1, host.size() - 2);
  return host;
}

bool is_loopback_host(const std::string& host) {
  if (host == "localhost")
    return true;
  auto h = unbracketed(host);
  in_addr v4{};
  if (inet_pton(AF_INET, h.c_str(), &v4) == 1)
    return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  if (inet_pton(AF_INET6, h.c_str(), &v6) == 1)
    return IN6_IS_ADDR_LOOPBACK(&v6)
           || (IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127);
  return false;
}

bool exposed_unsecured(const std::string& host, const std::string& missing) {
  return !missing.empty() && !is_loopback_host(host);
}

std::string check_listen_policy(const std::string& what,
                                const std::string& host,
                                const std::string& missing, bool insecure) {
  if (insecure || !exposed_unsecured(host, missing))
    return {};
  return what + " refuses to listen on " + host
         + " without " + missing
         + ": peers on other hosts could reach it unauthenticated. Give "
         + missing + ", listen on a loopback address (127.0.0.1), or pass "
           "--insecure to accept the risk";
}

std::string insecure_warning(const std::string& what,
                             const std::string& host) {
  return "--insecure: " + what + " listens on " + host
         + " without authentication: anyone who can reach it can talk to "
           "it";
}

} // namespace rondo::security
