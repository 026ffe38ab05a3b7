#include "client/stop_source.hpp"

namespace rondo::client {

bool stop_source::request_stop() {
  std::map<callback_id, std::function<void()>> callbacks;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    if (stopped_)
      return false;
    stopped_ = true;
    running_callbacks_ = true;
    callbacks = callbacks_;
  }
  cv_.notify_all();
  for (auto& [id, fn] : callbacks)
    fn();
  {
    std::lock_guard<std::mutex> guard{mtx_};
    running_callbacks_ = false;
  }
  callbacks_done_.notify_all();
  return true;
}

bool stop_source::stop_requested() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return stopped_;
}

bool stop_source::wait_for(std::chrono::steady_clock::duration timeout) const {
  std::unique_lock<std::mutex> lock{mtx_};
  return cv_.wait_for(lock, timeout, [this] { return stopped_; });
}

stop_source::callback_id stop_source::add_callback(std::function<void()> fn) {
  {
    std::lock_guard<std::mutex> guard{mtx_};
    if (!stopped_) {
      auto id = next_id_++;
      callbacks_.emplace(id, std::move(fn));
      return id;
    }
  }
  fn();
  return 0;
}

void stop_source::remove_callback(callback_id id) {
  if (id == 0)
    return;
  std::unique_lock<std::mutex> lock{mtx_};
  callbacks_.erase(id);
  // request_stop copied the callbacks; wait until the copy has run so the
  // caller may destroy what its callback captured.
  callbacks_done_.wait(lock, [this] { return !running_callbacks_; });
}

} // namespace rondo::client
