// TEMPORARY: only read_small_file, written on branch edge-auth so that the
// edge links; the cluster engineer's implementation (with init_ca,
// issue_cert, check_tls_files) replaces this file at merge.
#include "security/certs.hpp"

#include "messages/error.hpp"

#include <caf/expected.hpp>

#include <fstream>
#include <iterator>

namespace rondo::security {

caf::expected<std::string> read_small_file(const std::string& path,
                                           const std::string& flag) {
  constexpr std::streamoff limit = 1 << 20;
  std::ifstream in{path, std::ios::binary | std::ios::ate};
  if (!in)
    return caf::make_error(ec::invalid_config,
                           flag + ": cannot read " + path);
  if (in.tellg() > limit)
    return caf::make_error(ec::invalid_config,
                           flag + ": " + path + " is larger than 1 MiB");
  in.seekg(0);
  std::string bytes{std::istreambuf_iterator<char>{in},
                    std::istreambuf_iterator<char>{}};
  if (bytes.empty())
    return caf::make_error(ec::invalid_config, flag + ": " + path
                                                 + " is empty");
  return bytes;
}

} // namespace rondo::security
