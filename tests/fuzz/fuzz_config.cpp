// libFuzzer target: round and session configs (messages/round_config.*,
// messages/config_values.*, messages/controller_messages.*): the JSON form
// (`rondo config check`, `rondo session start --config`, job and round
// records) and the string-map form fedn.Control.Start hands the combiner.
//
// The input is tried as JSON text by both JSON parsers, and as lines
// `key=value` (one Control.Start parameter each) by parse_round_config.
// Properties beyond "no crash, leak, UB or uncaught exception":
// - a rejection is ec::invalid_config with a non-empty text;
// - an accepted config passes validate(), and to_json() parses back into
//   an equal config (round_config documents this; session configs are
//   stored and re-read the same way);
// - a job record holding an accepted round config encodes and decodes
//   back to it (the combiner persists every queued round this way).

#include "fuzz_util.hpp"

#include "messages/controller_messages.hpp"
#include "messages/records_codec.hpp"
#include "messages/round_config.hpp"

#include <nlohmann/json.hpp>

#include <map>
#include <string>

using namespace rondo;
using rondo::fuzz::check;

namespace {

/// True if `s` is valid UTF-8: shortest forms, no surrogates, at most
/// U+10FFFF (protobuf rejects a proto3 string that is not, so
/// Control.Start's parameters always are).
bool utf8(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    auto b = static_cast<unsigned char>(s[i]);
    size_t n = b < 0x80 ? 1 : (b >> 5) == 6 ? 2 : (b >> 4) == 14 ? 3
                              : (b >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size())
      return false;
    uint32_t cp = n == 1 ? b : b & (0x7f >> n);
    for (size_t k = 1; k < n; ++k) {
      auto c = static_cast<unsigned char>(s[i + k]);
      if ((c >> 6) != 2)
        return false;
      cp = (cp << 6) | (c & 0x3f);
    }
    static constexpr uint32_t min_of[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_of[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
      return false;
    i += n;
  }
  return true;
}

void check_round_config(const round_config& cfg) {
  check(!validate(cfg), "an accepted round config validates");
  auto text = to_json(cfg);
  auto back = parse_round_config_json(text);
  if (!back)
    std::fprintf(stderr, "to_json: %s\nerror: %s\n", text.c_str(),
                 render(back.error()).c_str());
  check(static_cast<bool>(back), "to_json(round_config) parses back");
  check(*back == cfg, "to_json(round_config) parses back equal");
  job_record job;
  job.job_id = "job-1";
  job.config = cfg;
  job_record decoded;
  auto err = decode(encode(job), decoded);
  check(!err, "a job record with this config decodes");
  check(decoded == job, "a job record with this config decodes equal");
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text{fuzz::as_view(data, size)};
  // JSON: round config.
  if (auto cfg = parse_round_config_json(text))
    check_round_config(*cfg);
  else
    fuzz::check_error(cfg.error(), ec::invalid_config);
  // JSON: session config.
  if (auto cfg = parse_session_config_json(text)) {
    check(!validate(*cfg), "an accepted session config validates");
    auto back = parse_session_config_json(to_json(*cfg));
    check(static_cast<bool>(back), "to_json(session_config) parses back");
    check(*back == *cfg, "to_json(session_config) parses back equal");
  } else {
    fuzz::check_error(cfg.error(), ec::invalid_config);
  }
  // Control.Start's parameters: one `key=value` per line (as a map, the
  // last of a repeated key wins here; the gateway refuses repeats).
  std::map<std::string, std::string> kv;
  size_t pos = 0;
  while (pos <= text.size()) {
    auto end = text.find('\n', pos);
    if (end == std::string::npos)
      end = text.size();
    auto line = text.substr(pos, end - pos);
    auto eq = line.find('=');
    if (eq != std::string::npos)
      kv[line.substr(0, eq)] = line.substr(eq + 1);
    pos = end + 1;
  }
  for (auto& [key, value] : kv)
    if (!utf8(key) || !utf8(value))
      return 0;
  if (auto cfg = parse_round_config(kv))
    check_round_config(*cfg);
  else
    fuzz::check_error(cfg.error(), ec::invalid_config);
  return 0;
}
