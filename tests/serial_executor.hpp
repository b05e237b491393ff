// A serial executor for the tests of spawn_options::callback_executor: one thread running tasks in
// order; `hold` keeps it from starting any.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

namespace procxy_test {

class serial_executor {
 public:
  serial_executor() : thread_([this] { loop(); }) {}
  ~serial_executor() {
    {
      std::lock_guard lk(mu_);
      stop_ = true;
      held_ = false;
    }
    cv_.notify_all();
    thread_.join();
  }
  std::function<void(std::function<void()>)> post() {
    return [this](std::function<void()> task) {
      std::lock_guard lk(mu_);
      tasks_.push_back(std::move(task));
      cv_.notify_all();
    };
  }
  void hold(bool h) {
    std::lock_guard lk(mu_);
    held_ = h;
    cv_.notify_all();
  }
  std::thread::id id() const { return thread_.get_id(); }
  std::size_t queued() {
    std::lock_guard lk(mu_);
    return tasks_.size();
  }

 private:
  void loop() {
    std::unique_lock lk(mu_);
    for (;;) {
      cv_.wait(lk, [&] { return stop_ || (!held_ && !tasks_.empty()); });
      if (tasks_.empty() || held_) return;
      auto t = std::move(tasks_.front());
      tasks_.pop_front();
      lk.unlock();
      t();
      lk.lock();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;
  bool held_ = false, stop_ = false;
  std::thread thread_;  // last: starts after the members it uses
};

}  // namespace procxy_test
