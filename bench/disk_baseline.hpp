#pragma once

// What the disk does without Rondo: a file written with O_DIRECT 2 MiB
// writes and one fdatasync, and read back with O_DIRECT, in the folder a
// benchmark's store uses. The model store writes a large model the same
// way (storage/model_file.hpp), so this is its floor on the same disk, in
// the same run.

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <stdexcept>
#include <string>

namespace rondo::bench {

/// Seconds the disk took to write and to read back a file.
struct disk_seconds {
  double write = 0;
  double read = 0;
};

/// Writes `mib` MiB (rounded up to 2 MiB) of incompressible bytes to `path`
/// with O_DIRECT and one fdatasync, reads them back with O_DIRECT, and
/// removes the file. Throws std::runtime_error naming the path and errno's
/// text on failure.
inline disk_seconds measure_disk(const std::string& path, size_t mib) {
  using clock_type = std::chrono::steady_clock;
  constexpr size_t block = 2 << 20;
  auto fail = [&](const std::string& what) {
    throw std::runtime_error(what + " " + path + ": "
                             + std::strerror(errno));
  };
  // As the store's buffers: aligned to their size, on a huge page where
  // the kernel grants one (an O_DIRECT write then pins one page, not 512).
  auto* buf = static_cast<char*>(std::aligned_alloc(block, block));
  if (buf != nullptr)
    ::madvise(buf, block, MADV_HUGEPAGE);
  std::mt19937_64 gen{7};
  for (size_t i = 0; i < block; i += 8) {
    auto x = gen();
    std::memcpy(buf + i, &x, 8);
  }
  disk_seconds out;
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_DIRECT,
                  0644);
  if (fd < 0)
    fail("cannot create");
  auto t0 = clock_type::now();
  for (size_t done = 0; done < mib; done += 2) {
    buf[0] = static_cast<char>(done); // no two blocks alike
    if (::write(fd, buf, block) != static_cast<ssize_t>(block))
      fail("cannot write");
  }
  if (::fdatasync(fd) != 0)
    fail("cannot sync");
  out.write = std::chrono::duration<double>(clock_type::now() - t0).count();
  ::close(fd);
  fd = ::open(path.c_str(), O_RDONLY | O_DIRECT);
  if (fd < 0)
    fail("cannot open");
  t0 = clock_type::now();
  for (;;) {
    auto n = ::read(fd, buf, block);
    if (n < 0)
      fail("cannot read");
    if (n == 0)
      break;
  }
  out.read = std::chrono::duration<double>(clock_type::now() - t0).count();
  ::close(fd);
  std::free(buf);
  std::filesystem::remove(path);
  return out;
}

} // namespace rondo::bench
