// `rondo certs init DIR` and `rondo certs issue DIR NAME`: a cluster CA
// and the certificates of its nodes and operators, written with libcrypto
// (security/certs.hpp). Nothing is ever overwritten; keys are mode 0600.

#include "apps/commands.hpp"
#include "messages/error.hpp"
#include "security/certs.hpp"

#include <CLI/CLI.hpp>

#include <iomanip>
#include <iostream>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace rondo::apps {

namespace {

struct certs_args {
  std::string dir;
  std::string name;
  std::vector<std::string> hosts;
  int days = 0;
  std::string common_name;
};

/// "Rondo cluster CA " and 8 random hex digits: two clusters' CAs must not
/// share a subject, or a certificate of one checked against the other fails
/// with OpenSSL's misleading "self-signed certificate in certificate chain"
/// instead of "unable to get local issuer certificate".
std::string default_ca_name() {
  std::random_device rd;
  std::ostringstream os;
  os << "Rondo cluster CA " << std::hex << std::setw(8) << std::setfill('0')
     << rd();
  return os.str();
}

/// Prints the written files, or the error; @returns the exit code.
int report(const caf::error& err, const security::cert_paths& paths) {
  if (err) {
    std::cerr << "error: " << render(err) << "\n";
    return 1;
  }
  std::cout << paths.key << " (private key, mode 0600)\n"
            << paths.cert << " (certificate)" << std::endl;
  return 0;
}

} // namespace

void add_certs_command(CLI::App& app, int& exit_code) {
  auto* certs = app.add_subcommand(
    "certs", "Create a cluster CA and issue node/operator certificates "
             "(EC P-256, for --cert/--key/--ca)");
  certs->require_subcommand(1);

  auto i = std::make_shared<certs_args>();
  i->days = 3650;
  auto* init = certs->add_subcommand(
    "init", "Create DIR (0700) with a new CA: ca.key (0600) and ca.crt; "
            "refuses to overwrite");
  init->add_option("dir", i->dir, "Certificate folder")->required();
  init->add_option("--days", i->days, "Days the CA certificate is valid")
    ->capture_default_str();
  init->add_option("--cn", i->common_name,
                   "The CA's subject common name (default: \"Rondo cluster "
                   "CA\" and 8 random hex digits)");
  init->callback([i, &exit_code] {
    if (i->common_name.empty())
      i->common_name = default_ca_name();
    exit_code = report(security::init_ca(i->dir, i->days, i->common_name),
                       security::ca_paths(i->dir));
  });

  auto s = std::make_shared<certs_args>();
  s->days = 825;
  auto* issue = certs->add_subcommand(
    "issue", "Issue NAME.key (0600) and NAME.crt in DIR, signed by its CA, "
             "for a node (controller, combiner) or an operator; refuses to "
             "overwrite");
  issue->add_option("dir", s->dir, "Certificate folder (with ca.key, ca.crt)")
    ->required();
  issue->add_option("name", s->name,
                    "Certificate name and subject CN: [A-Za-z0-9._-]+")
    ->required();
  issue->add_option("--host", s->hosts,
                    "A host name or IP address the node is reached by "
                    "(subjectAltName; repeatable; default: NAME as a DNS "
                    "name)");
  issue->add_option("--days", s->days, "Days the certificate is valid")
    ->capture_default_str();
  issue->callback([s, &exit_code] {
    exit_code = report(security::issue_cert(s->dir, s->name, s->hosts,
                                            s->days),
                       security::node_paths(s->dir, s->name));
  });
}

} // namespace rondo::apps
