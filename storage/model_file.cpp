#include "storage/model_file.hpp"

#include "messages/error.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <utility>

namespace rondo::storage::detail {

namespace {

/// O_DIRECT's alignment of buffers, offsets and lengths: 4 KiB covers the
/// logical block size of every disk in use (512 B or 4 KiB).
constexpr size_t alignment = 4096;

caf::error os_error(const std::string& what, int errnum) {
  return caf::make_error(ec::storage_error,
                         what + ": " + std::strerror(errnum));
}

/// Aligned buffers of `direct_file_writer::block_bytes`, kept for the next
/// writer instead of freed: a fresh buffer costs a page fault per page.
class buffer_cache {
public:
  /// A buffer, or nullptr when out of memory.
  char* take() {
    {
      std::lock_guard<std::mutex> guard{mtx_};
      if (!spare_.empty()) {
        auto* p = spare_.back();
        spare_.pop_back();
        return p;
      }
    }
    // Aligned to its size, so that the kernel can back it with one huge
    // page (where transparent huge pages are on, even if only on request):
    // an O_DIRECT write then pins one page instead of 512. Measured on this
    // VM (bench_transfer, after the first upload): uploads of 1.1–1.7 GB/s
    // against 0.86–1.07 GB/s with 4 KiB-aligned buffers.
    constexpr size_t size = direct_file_writer::block_bytes;
    auto* p = static_cast<char*>(std::aligned_alloc(size, size));
    if (p != nullptr)
      ::madvise(p, size, MADV_HUGEPAGE); // advice only: errors are harmless
    return p;
  }

  void give(char* p) {
    std::lock_guard<std::mutex> guard{mtx_};
    if (spare_.size() < max_spare) {
      spare_.push_back(p);
      return;
    }
    std::free(p);
  }

  ~buffer_cache() {
    for (auto* p : spare_)
      std::free(p);
  }

private:
  /// 16 buffers: 32 MiB, the buffers of four uploads at once.
  static constexpr size_t max_spare = 16;
  std::mutex mtx_;
  std::vector<char*> spare_;
};

buffer_cache& buffers() {
  static buffer_cache cache;
  return cache;
}

/// Opens `path` with `flags` plus O_DIRECT, or without it where the file
/// system refuses the flag (EINVAL, e.g. an old tmpfs); `direct` says which.
/// Returns the descriptor, or -1 with errno set.
int open_direct(const std::string& path, int flags, bool& direct) {
  direct = true;
  int fd = ::open(path.c_str(), flags | O_DIRECT, 0644);
  if (fd >= 0 || errno != EINVAL)
    return fd;
  // With O_CREAT the file may have been created before the flag was
  // refused (O_EXCL came first, so it is ours).
  if ((flags & O_CREAT) != 0)
    ::unlink(path.c_str());
  direct = false;
  return ::open(path.c_str(), flags, 0644);
}

/// Writes all `len` bytes at `offset`; returns 0 or errno.
int write_all(int fd, const char* data, size_t len, uint64_t offset) {
  while (len > 0) {
    auto n = ::pwrite(fd, data, len, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return errno;
    }
    if (n == 0)
      return EIO;
    data += n;
    len -= static_cast<size_t>(n);
    offset += static_cast<uint64_t>(n);
  }
  return 0;
}

} // namespace

// -- io_pool ------------------------------------------------------------------

io_pool::io_pool(size_t threads) {
  threads = std::max<size_t>(threads, 1);
  threads_.reserve(threads);
  for (size_t i = 0; i < threads; ++i)
    threads_.emplace_back([this] { run(); });
}

io_pool::~io_pool() {
  {
    std::lock_guard<std::mutex> guard{mtx_};
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_)
    t.join();
}

void io_pool::submit(std::function<void()> job) {
  {
    std::lock_guard<std::mutex> guard{mtx_};
    jobs_.push_back(std::move(job));
  }
  cv_.notify_one();
}

void io_pool::run() {
  for (;;) {
    std::function<void()> job;
    {
      std::unique_lock<std::mutex> lock{mtx_};
      // Waits for work, not for time: the pool's threads are idle until a
      // writer submits a block or the store closes.
      cv_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
      if (jobs_.empty())
        return;
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    job();
  }
}

// -- direct_file_writer -------------------------------------------------------

/// What the writer shares with its writes: the free buffers, and the
/// file's queue of writes, which run one at a time in order (a strand on the
/// io_pool). One file's O_DIRECT writes in parallel contend for its inode
/// (ext4 serializes writes that extend a file) and measured slower than in
/// order; the pool's threads serve several files at once.
struct direct_file_writer::shared {
  std::mutex mtx;
  std::condition_variable cv;
  std::vector<char*> free;
  size_t owned = 0;
  /// Writes queued or running.
  size_t in_flight = 0;
  /// A pool thread is draining `queue`.
  bool draining = false;
  struct write {
    char* buf;
    size_t length;
    uint64_t offset;
  };
  std::deque<write> queue;
  /// wait_for_room's callback, and the free buffers it waits for.
  std::function<void()> on_room;
  size_t room_blocks = 0;
  caf::error error;
  int fd = -1;
  std::string path;

  /// Runs the queued writes in order until the queue is empty.
  void drain() {
    std::unique_lock<std::mutex> lock{mtx};
    while (!queue.empty()) {
      auto w = queue.front();
      queue.pop_front();
      bool failed = static_cast<bool>(error);
      lock.unlock();
      // After a failure the rest is not written: the writer is done for.
      int errnum = failed ? 0 : write_all(fd, w.buf, w.length, w.offset);
      lock.lock();
      if (errnum != 0 && !error)
        error = os_error("cannot write " + path + " at offset "
                           + std::to_string(w.offset),
                         errnum);
      free.push_back(w.buf);
      --in_flight;
      cv.notify_all();
      if (on_room && (free.size() + depth - owned >= room_blocks || error)) {
        auto fn = std::exchange(on_room, nullptr);
        lock.unlock();
        fn();
        lock.lock();
      }
    }
    draining = false;
  }
};

caf::expected<std::unique_ptr<direct_file_writer>>
direct_file_writer::create(io_pool& pool, std::string path) {
  bool direct = false;
  int fd = open_direct(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, direct);
  if (fd < 0) {
    int errnum = errno;
    if (errnum == EEXIST)
      return caf::make_error(ec::already_exists, "file " + path
                                                   + " already exists");
    return os_error("cannot create " + path, errnum);
  }
  return std::unique_ptr<direct_file_writer>{
    new direct_file_writer(pool, std::move(path), fd, direct)};
}

direct_file_writer::direct_file_writer(io_pool& pool, std::string path,
                                       int fd, bool direct)
  : pool_(pool), path_(std::move(path)), fd_(fd), direct_(direct),
    shared_(std::make_shared<shared>()) {
  shared_->fd = fd;
  shared_->path = path_;
}

direct_file_writer::~direct_file_writer() {
  if (!finished_)
    discard();
  if (current_ != nullptr)
    buffers().give(current_);
  for (auto* p : shared_->free)
    buffers().give(p);
}

void direct_file_writer::submit_current(size_t padded) {
  auto& sh = *shared_;
  bool start = false;
  {
    std::lock_guard<std::mutex> guard{sh.mtx};
    sh.queue.push_back({current_, padded, offset_});
    ++sh.in_flight;
    start = !sh.draining;
    sh.draining = true;
  }
  if (start)
    pool_.submit([sp = shared_] { sp->drain(); });
  current_ = nullptr;
  offset_ += fill_;
  fill_ = 0;
}

bool direct_file_writer::wait_for_room(size_t n, std::function<void()> fn) {
  size_t here = current_ != nullptr ? block_bytes - fill_ : 0;
  if (n <= here)
    return false;
  size_t blocks = (n - here + block_bytes - 1) / block_bytes;
  if (blocks > depth)
    return false;
  auto& sh = *shared_;
  std::lock_guard<std::mutex> guard{sh.mtx};
  if (sh.error || sh.free.size() + depth - sh.owned >= blocks)
    return false;
  sh.on_room = std::move(fn);
  sh.room_blocks = blocks;
  return true;
}

caf::error direct_file_writer::append(std::string_view bytes) {
  if (fd_ < 0)
    return caf::make_error(ec::storage_error,
                           "file " + path_ + " is closed");
  while (!bytes.empty()) {
    if (current_ == nullptr) {
      auto& sh = *shared_;
      std::unique_lock<std::mutex> lock{sh.mtx};
      if (sh.free.empty() && sh.owned < depth) {
        lock.unlock();
        auto* p = buffers().take();
        if (p == nullptr)
          return caf::make_error(ec::storage_error,
                                 "out of memory for the write buffers of "
                                   + path_);
        lock.lock();
        sh.free.push_back(p);
        ++sh.owned;
      }
      // Bounded by the disk: a write in flight returns its buffer when
      // pwrite returns.
      sh.cv.wait(lock, [&] { return !sh.free.empty() || sh.error; });
      if (sh.error)
        return sh.error;
      current_ = sh.free.back();
      sh.free.pop_back();
    }
    auto n = std::min(block_bytes - fill_, bytes.size());
    std::memcpy(current_ + fill_, bytes.data(), n);
    fill_ += n;
    size_ += n;
    bytes.remove_prefix(n);
    if (fill_ == block_bytes)
      submit_current(block_bytes);
  }
  std::lock_guard<std::mutex> guard{shared_->mtx};
  return shared_->error;
}

caf::error direct_file_writer::wait_idle() {
  auto& sh = *shared_;
  std::unique_lock<std::mutex> lock{sh.mtx};
  sh.cv.wait(lock, [&] { return sh.in_flight == 0; });
  return sh.error;
}

caf::error direct_file_writer::finish(bool sync) {
  if (fd_ < 0)
    return caf::make_error(ec::storage_error,
                           "file " + path_ + " is closed");
  auto fail = [this](caf::error err) {
    discard();
    return err;
  };
  if (fill_ > 0) {
    // O_DIRECT writes whole aligned blocks; the padding is cut off below.
    auto padded = direct_ ? (fill_ + alignment - 1) / alignment * alignment
                          : fill_;
    std::memset(current_ + fill_, 0, padded - fill_);
    submit_current(padded);
  }
  if (auto err = wait_idle())
    return fail(std::move(err));
  if (direct_ && size_ % alignment != 0
      && ::ftruncate(fd_, static_cast<off_t>(size_)) != 0)
    return fail(os_error("cannot truncate " + path_, errno));
  if (sync && ::fdatasync(fd_) != 0)
    return fail(os_error("cannot sync " + path_, errno));
  close_fd();
  if (!sync) {
    finished_ = true;
    return caf::none;
  }
  // The file's name in its folder must survive a crash too.
  auto folder = std::filesystem::path{path_}.parent_path().string();
  int dir = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0)
    return fail(os_error("cannot open " + folder, errno));
  int rc = ::fsync(dir);
  int errnum = errno;
  ::close(dir);
  if (rc != 0)
    return fail(os_error("cannot sync " + folder, errnum));
  finished_ = true;
  return caf::none;
}

void direct_file_writer::discard() {
  if (finished_ && fd_ < 0 && path_.empty())
    return;
  static_cast<void>(wait_idle());
  close_fd();
  if (!path_.empty())
    ::unlink(path_.c_str());
  finished_ = true;
  path_.clear();
}

void direct_file_writer::close_fd() {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
}

// -- direct_file_reader -------------------------------------------------------

namespace {

/// Reads up to `len` bytes at `offset`; returns the count (short at the end
/// of the file) or -errno.
int64_t read_some(int fd, char* data, size_t len, uint64_t offset) {
  size_t got = 0;
  while (got < len) {
    auto n = ::pread(fd, data + got, len - got,
                     static_cast<off_t>(offset + got));
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return -errno;
    if (n == 0)
      break;
    got += static_cast<size_t>(n);
  }
  return static_cast<int64_t>(got);
}

} // namespace

/// The file, its buffers and the fetches in flight; shared with the
/// fetches, so that a reader destroyed mid-fetch leaves them valid.
struct direct_file_reader::shared {
  /// One chunk's aligned read: where it starts in `buf` and its result.
  struct slot {
    char* buf = nullptr;
    uint64_t index = 0;
    bool busy = false; // fetching or fetched, not yet taken
    bool done = false;
    int64_t result = 0; // bytes read, or -errno
  };

  std::string path;
  int fd = -1;
  bool direct = false;
  uint64_t size = 0;
  uint32_t chunk_bytes = 0;
  uint64_t chunk_count = 0;
  size_t buf_bytes = 0;
  std::mutex mtx;
  std::condition_variable cv;
  std::vector<slot> slots;

  /// Whether `s` may take a new read when chunk `index` is read: it is
  /// free, or holds a finished fetch outside the chunks ahead of `index`
  /// (the reads did not go in order).
  static bool reusable(const slot& s, uint64_t index) {
    return !s.busy
           || (s.done && (s.index <= index || s.index > index + depth));
  }

  ~shared() {
    if (fd >= 0)
      ::close(fd);
    for (auto& s : slots) {
      if (buf_bytes == direct_file_writer::block_bytes)
        buffers().give(s.buf);
      else
        std::free(s.buf);
    }
  }

  /// The aligned range covering chunk `index`: its file offset, its length
  /// and where the chunk starts in it.
  struct range {
    uint64_t offset;
    size_t length;
    size_t skip;
  };

  range range_of(uint64_t index) const {
    uint64_t begin = index * uint64_t{chunk_bytes};
    uint64_t end = std::min(size, begin + chunk_bytes);
    if (!direct)
      return {begin, static_cast<size_t>(end - begin), 0};
    uint64_t a = begin / alignment * alignment;
    uint64_t b = (end + alignment - 1) / alignment * alignment;
    return {a, static_cast<size_t>(b - a), static_cast<size_t>(begin - a)};
  }

  /// Reads chunk `index` into `buf`; the bytes read, or -errno.
  int64_t load(char* buf, uint64_t index) const {
    auto r = range_of(index);
    return read_some(fd, buf, r.length, r.offset);
  }

  /// Copies chunk `index` out of `buf`, read with result `got`.
  caf::error take(const char* buf, uint64_t index, int64_t got,
                  std::string& out) const {
    auto where = "chunk " + std::to_string(index) + " of " + path;
    if (got < 0)
      return os_error("cannot read " + where, static_cast<int>(-got));
    auto r = range_of(index);
    uint64_t want = std::min(size, (index + 1) * uint64_t{chunk_bytes})
                    - index * uint64_t{chunk_bytes};
    if (static_cast<uint64_t>(got) < r.skip + want)
      return caf::make_error(ec::corrupt, where + " is cut short (the file "
                                                  "ends early)");
    out.assign(buf + r.skip, want);
    return caf::none;
  }
};

caf::expected<std::unique_ptr<direct_file_reader>>
direct_file_reader::open(io_pool* pool, const std::string& path,
                         uint64_t size, uint32_t chunk_bytes) {
  auto sh = std::make_shared<shared>();
  sh->path = path;
  sh->size = size;
  sh->chunk_bytes = chunk_bytes;
  sh->chunk_count = chunk_bytes == 0 ? 0
                                     : (size + chunk_bytes - 1) / chunk_bytes;
  sh->fd = open_direct(path, O_RDONLY | O_CLOEXEC, sh->direct);
  if (sh->fd < 0) {
    int errnum = errno;
    if (errnum == ENOENT)
      return caf::make_error(ec::not_found, path + " does not exist");
    return os_error("cannot open " + path, errnum);
  }
  // An aligned range spans at most one alignment unit more than the chunk
  // rounded up.
  size_t need = (size_t{chunk_bytes} + alignment - 1) / alignment * alignment
                + alignment;
  sh->buf_bytes = need <= direct_file_writer::block_bytes
                    ? direct_file_writer::block_bytes
                    : need;
  sh->slots.resize(pool == nullptr ? 1 : depth + 1);
  for (auto& s : sh->slots) {
    s.buf = sh->buf_bytes == direct_file_writer::block_bytes
              ? buffers().take()
              : static_cast<char*>(std::aligned_alloc(alignment,
                                                      sh->buf_bytes));
    if (s.buf == nullptr)
      return caf::make_error(ec::storage_error,
                             "out of memory for the read buffers of "
                               + path);
  }
  return std::unique_ptr<direct_file_reader>{
    new direct_file_reader(pool, std::move(sh))};
}

direct_file_reader::direct_file_reader(io_pool* pool,
                                       std::shared_ptr<shared> sh)
  : pool_(pool), shared_(std::move(sh)) {
}

// Fetches in flight keep the shared state (file, buffers) alive.
direct_file_reader::~direct_file_reader() = default;

void direct_file_reader::fetch_ahead(uint64_t index) {
  if (pool_ == nullptr)
    return;
  auto& sh = *shared_;
  std::lock_guard<std::mutex> guard{sh.mtx};
  for (uint64_t next = index + 1;
       next <= index + depth && next < sh.chunk_count; ++next) {
    bool queued = false;
    for (auto& s : sh.slots)
      queued = queued || (s.busy && s.index == next);
    if (queued)
      continue;
    auto free = std::find_if(sh.slots.begin(), sh.slots.end(), [&](auto& s) {
      return shared::reusable(s, index);
    });
    if (free == sh.slots.end())
      return;
    free->busy = true;
    free->done = false;
    free->index = next;
    auto* slot = &*free;
    pool_->submit([sp = shared_, slot, next] {
      auto got = sp->load(slot->buf, next);
      std::lock_guard<std::mutex> guard{sp->mtx};
      slot->result = got;
      slot->done = true;
      sp->cv.notify_all();
    });
  }
}

caf::error direct_file_reader::read(uint64_t index, std::string& out) {
  auto& sh = *shared_;
  caf::error err;
  {
    std::unique_lock<std::mutex> lock{sh.mtx};
    auto hit = std::find_if(sh.slots.begin(), sh.slots.end(), [&](auto& s) {
      return s.busy && s.index == index;
    });
    if (hit != sh.slots.end()) {
      // Bounded by the disk: the fetch ends when its pread returns.
      sh.cv.wait(lock, [&] { return hit->done; });
      err = sh.take(hit->buf, index, hit->result, out);
      hit->busy = false;
    } else {
      // Not fetched ahead: read it here, into a slot no fetch holds (one
      // slot more than the fetches ahead, so one frees when a fetch ends).
      auto usable = [&](auto& s) { return shared::reusable(s, index); };
      sh.cv.wait(lock, [&] {
        return std::any_of(sh.slots.begin(), sh.slots.end(), usable);
      });
      auto free = std::find_if(sh.slots.begin(), sh.slots.end(), usable);
      auto* buf = free->buf;
      free->busy = true;
      lock.unlock();
      auto got = sh.load(buf, index);
      err = sh.take(buf, index, got, out);
      lock.lock();
      free->busy = false;
    }
  }
  if (!err)
    fetch_ahead(index);
  return err;
}

} // namespace rondo::storage::detail
