// procxy/detail/core.hpp — the parent's side of one child: process, connection, dispatch thread.
// proxy<T> is a typed face on a shared core; futures keep the connection (not the core) alive.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "procxy/detail/connection.hpp"
#include "procxy/options.hpp"

namespace procxy::detail {

class child_process;

class proxy_core : public std::enable_shared_from_this<proxy_core> {
 public:
  // Starts the child and sends `construct_frame` (a construct frame: ctor id + arguments).
  static std::shared_ptr<proxy_core> start(const spawn_options& opts, byte_buffer& construct_frame,
                                           const char* class_name);
  ~proxy_core();
  proxy_core(const proxy_core&) = delete;
  proxy_core& operator=(const proxy_core&) = delete;

  connection& conn() noexcept { return *conn_; }
  const spawn_options& options() const noexcept { return opts_; }
  const char* class_name() const noexcept { return class_name_; }
  int pid() const noexcept;
  bool running() const;
  // Idempotent and thread-safe. See proxy<T>::terminate.
  void terminate();
  future<void> started();

  clock::time_point deadline_for(std::chrono::milliseconds timeout) const {
    return timeout.count() > 0 ? clock::now() + timeout : no_deadline;
  }

 private:
  proxy_core() = default;
  std::exception_ptr on_disconnect(std::exception_ptr cause);

  spawn_options opts_;
  const char* class_name_ = "";
  std::unique_ptr<child_process> child_;
  std::shared_ptr<connection> conn_;
  std::thread dispatch_;
  state_ptr<state<void>> started_;
  std::mutex terminate_mu_;
  bool terminated_ = false;                // under terminate_mu_
  std::atomic<bool> terminating_{false};   // read by on_disconnect without the mutex
};

}  // namespace procxy::detail
