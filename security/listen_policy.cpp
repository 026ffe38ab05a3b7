#include "security/listen_policy.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>

namespace rondo::security {

bool is_loopback_host(const std::string& host) {
  if (host == "localhost")
    return true;
  auto h = host;
  if (h.size() > 2 && h.front() == '[' && h.back() == ']')
    h = h.substr(1, h.size() - 2);
  in_addr v4{};
  if (inet_pton(AF_INET, h.c_str(), &v4) == 1)
    return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  if (inet_pton(AF_INET6, h.c_str(), &v6) == 1)
    return IN6_IS_ADDR_LOOPBACK(&v6)
           || (IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127);
  return false;
}

std::string check_listen_policy(const std::string& what,
                                const std::string& host,
                                const std::string& missing, bool insecure) {
  if (missing.empty() || insecure || is_loopback_host(host))
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
