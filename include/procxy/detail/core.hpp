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

#include "procxy/detail/call_target.hpp"
#include "procxy/detail/connection.hpp"
#include "procxy/detail/event_hub.hpp"
#include "procxy/options.hpp"

namespace procxy::detail {

class child_process;
class stderr_capture;
class sandbox_report;

class proxy_core final : public call_target, public std::enable_shared_from_this<proxy_core> {
 public:
  // Starts the child and sends `construct_frame` (a construct frame: ctor id + arguments).
  // `constructor`: its signature for messages, "Db(std::string)".
  static std::shared_ptr<proxy_core> start(const spawn_options& opts, byte_buffer& construct_frame,
                                           const char* class_name, const char* constructor);
  ~proxy_core();
  proxy_core(const proxy_core&) = delete;
  proxy_core& operator=(const proxy_core&) = delete;

  connection& conn() noexcept { return *conn_; }
  const spawn_options& options() const noexcept { return opts_; }
  const char* class_name() const noexcept { return class_name_; }
  // Idempotent and thread-safe. See proxy<T>::terminate. `reason`: what later calls fail with.
  void terminate(const char* reason);
  // The child sent `dispose`: ends it as terminate() does (on the dispatch thread).
  void on_dispose();

  // call_target: one local child.
  connection& channel_for_call() override { return *conn_; }
  std::chrono::milliseconds default_timeout() const override { return opts_.call_timeout; }
  event_hub& events() override { return events_; }
  connection& event_channel() override { return *conn_; }
  future<void> started() override;
  int pid() const noexcept override;
  bool running() const override;
  void terminate() override { terminate(nullptr); }
  channel_stats stats() const override;

 private:
  friend class parent_handler;
  proxy_core() = default;
  std::exception_ptr on_disconnect(std::exception_ptr cause);
  void kill_after_timeout(const char* what);
  // Who ended the child (exit_info::requested / disposed), recorded once: the first wins.
  enum exit_cause : int { unknown = 0, by_proxy = 1, by_itself = 2, disposed = 3 };
  void mark_exit(exit_cause why) noexcept {
    int expected = unknown;
    exit_requested_->compare_exchange_strong(expected, why, std::memory_order_acq_rel);
  }
  void mark_exit(bool requested) noexcept { mark_exit(requested ? by_proxy : by_itself); }

  spawn_options opts_;
  const char* class_name_ = "";
  std::shared_ptr<child_process> child_;
  std::shared_ptr<stderr_capture> stderr_;
  int crash_fd_ = -1;  // the read end of the child's crash pipe (src/crash.hpp)
  std::shared_ptr<sandbox_report> sandbox_;  // spawn_options::sandbox: why the child died
  std::shared_ptr<std::atomic<int>> exit_requested_ = std::make_shared<std::atomic<int>>(0);
  std::shared_ptr<connection> conn_;
  mutable event_hub events_;
  std::shared_ptr<endpoint> handler_;
  std::atomic<bool> disposed_{false};
  std::thread dispatch_;
  state_ptr<state<void>> started_;
  std::mutex terminate_mu_;
  bool terminated_ = false;               // under terminate_mu_
  std::atomic<bool> terminating_{false};  // read by on_disconnect without the mutex
};

}  // namespace procxy::detail
