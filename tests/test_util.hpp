#pragma once

// Helpers shared by Rondo's tests.

#include <cstring>
#include <filesystem>
#include <random>
#include <string>

namespace rondo::test {

/// A fresh directory under the system temp dir, removed with the object.
class temp_dir {
public:
  temp_dir() {
    std::random_device rd;
    auto base = std::filesystem::temp_directory_path();
    for (;;) {
      path_ = base / ("rondo-test-" + std::to_string(rd()));
      if (std::filesystem::create_directory(path_))
        break;
    }
  }
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;

  const std::filesystem::path& path() const {
    return path_;
  }

  std::string str() const {
    return path_.string();
  }

  std::string sub(const std::string& name) const {
    return (path_ / name).string();
  }

  /// The path of `name` inside the directory.
  std::string operator/(const std::string& name) const {
    return sub(name);
  }

private:
  std::filesystem::path path_;
};

/// `n` pseudo-random bytes from a fixed seed (reproducible).
inline std::string random_bytes(size_t n, uint64_t seed = 42) {
  std::mt19937_64 gen{seed};
  std::string out(n, '\0');
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    auto x = gen();
    std::memcpy(out.data() + i, &x, 8);
  }
  for (; i < n; ++i)
    out[i] = static_cast<char>(gen());
  return out;
}

} // namespace rondo::test
