#pragma once

// Private to storage/*.cpp: large models as plain files, written with
// O_DIRECT on I/O threads so that the disk writes of one model overlap the
// caller's work (receiving the next chunks).
//
// Why, as measured on the VM Rondo is benchmarked on: a buffered write of
// 1 GiB costs 0.15–2 CPU seconds in the kernel's page-cache copy (fresh
// pages fault in the hypervisor); uploads written that way ran at
// 0.29–0.42 GB/s against 0.60–1.12 with O_DIRECT in runs in between. An
// O_DIRECT write costs the caller one copy into an aligned block and no
// page cache. One file's writes run one at a time: four at once on one
// file made uploads slower (0.55–0.66 against 0.70–0.86 GB/s; ext4
// serializes writes that extend a file).

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace rondo::storage::detail {

/// A fixed set of threads running blocking file I/O for one model store.
/// Jobs run in submission order per thread, concurrently across threads.
/// The destructor runs the jobs still queued, then joins.
class io_pool {
public:
  /// Starts `threads` threads (at least 1).
  explicit io_pool(size_t threads);
  ~io_pool();
  io_pool(const io_pool&) = delete;
  io_pool& operator=(const io_pool&) = delete;

  /// Queues `job`; never blocks.
  void submit(std::function<void()> job);

private:
  void run();

  std::mutex mtx_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

/// Writes one new file from a stream of bytes: each `block_bytes` block is
/// copied into an aligned buffer and written with pwrite (O_DIRECT where the
/// file system allows it, else buffered) on the io_pool, in order, while
/// the caller fills the next buffers; up to `depth` blocks are queued or
/// being written. `append` waits only when all buffers are, that is for the
/// disk. Not thread-safe (one caller).
class direct_file_writer {
public:
  /// Block size of each write: 2 MiB.
  static constexpr size_t block_bytes = size_t{2} << 20;
  /// Blocks queued or being written per file: 4 (8 MiB of buffers).
  static constexpr size_t depth = 4;

  /// Creates `path` (which must not exist; O_EXCL).
  /// @returns `ec::already_exists` if it exists, `ec::storage_error` naming
  ///          the path and errno's text on any other failure.
  static caf::expected<std::unique_ptr<direct_file_writer>>
  create(io_pool& pool, std::string path);

  /// Waits for writes in flight, then removes the file unless `finish()`
  /// succeeded.
  ~direct_file_writer();
  direct_file_writer(const direct_file_writer&) = delete;
  direct_file_writer& operator=(const direct_file_writer&) = delete;

  /// Whether `append` of `n` bytes would wait for the disk (all buffers
  /// queued or being written). If so, `fn` is kept and called once, on an
  /// I/O thread, when it would not, and the result is true; else `fn` is
  /// dropped. False also when `n` needs more than all `depth` buffers
  /// (`append` then waits as writes finish). At most one `fn` is kept.
  bool wait_for_room(size_t n, std::function<void()> fn);

  /// Appends `bytes`. @returns the first failed write's `ec::storage_error`
  /// (naming the file, the offset and errno's text); the writer is then
  /// unusable.
  caf::error append(std::string_view bytes);

  /// Writes the rest, waits for every write and cuts the file to `size()`
  /// bytes. With `sync`, also makes it durable: fdatasync of the file and
  /// fsync of its folder. Without, the bytes are on the disk (O_DIRECT) but
  /// the file's size and name may not survive an OS crash.
  /// @returns `ec::storage_error` on any failure (the file is removed).
  caf::error finish(bool sync);

  /// Waits for writes in flight and removes the file. Idempotent.
  void discard();

  /// Bytes appended so far.
  uint64_t size() const {
    return size_;
  }

  const std::string& path() const {
    return path_;
  }

private:
  struct shared;
  direct_file_writer(io_pool& pool, std::string path, int fd, bool direct);
  // Queues the current buffer (`fill_` bytes, padded to `padded`) for
  // writing.
  void submit_current(size_t padded);
  caf::error wait_idle();
  void close_fd();

  io_pool& pool_;
  std::string path_;
  int fd_ = -1;
  bool direct_ = false;
  bool finished_ = false;
  std::shared_ptr<shared> shared_;
  char* current_ = nullptr;
  size_t fill_ = 0;
  uint64_t offset_ = 0; // file offset of current_
  uint64_t size_ = 0;
};

/// Reads the chunks of a file that direct_file_writer wrote, with O_DIRECT
/// (else buffered): a file written past the page cache is read past it too,
/// without filling the cache at a page fault per page. Read in order, it
/// fetches up to `depth` chunks ahead on an io_pool, so that the disk works
/// while the caller sends. Not thread-safe (one caller).
class direct_file_reader {
public:
  /// Chunks fetched ahead: 3.
  static constexpr size_t depth = 3;

  /// Opens `path`, a file of `size` bytes read in chunks of `chunk_bytes`
  /// (the last one shorter). `pool`: where to fetch ahead; null for none
  /// (random access).
  /// @returns `ec::not_found` if the file does not exist,
  ///          `ec::storage_error` naming the path otherwise.
  static caf::expected<std::unique_ptr<direct_file_reader>>
  open(io_pool* pool, const std::string& path, uint64_t size,
       uint32_t chunk_bytes);

  ~direct_file_reader();
  direct_file_reader(const direct_file_reader&) = delete;
  direct_file_reader& operator=(const direct_file_reader&) = delete;

  /// Reads chunk `index` into `out` (replacing its contents).
  /// @returns `ec::corrupt` if the file ends before the chunk does,
  ///          `ec::storage_error` (errno's text) on a read failure.
  caf::error read(uint64_t index, std::string& out);

private:
  struct shared;
  direct_file_reader(io_pool* pool, std::shared_ptr<shared> sh);
  void fetch_ahead(uint64_t index);

  io_pool* pool_;
  std::shared_ptr<shared> shared_;
};

} // namespace rondo::storage::detail
