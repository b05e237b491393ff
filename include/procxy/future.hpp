// procxy/future.hpp — the one result type of every proxied call.
//
//   procxy::future<double> f = calc.add(5, 3);
//   double a = f.get();                          // blocks; re-throws the child's exception
//   double b = co_await calc.add(1, 2);          // in any C++20 coroutine
//   calc.add(1, 2).then([](double v) { ... });   // runs on the proxy's dispatch thread
//   procxy::outcome<double> o = calc.add(1, 2).try_get();   // never throws
//
// Threads. Any thread may wait on a future. A thread blocked in get()/wait() on a proxy's future
// may read that proxy's socket on behalf of everyone (no thread hop for the common case; see
// docs/design.md "Threads"), but never runs user code while doing so: `then` continuations and
// coroutine resumptions of a proxy's futures run on that proxy's dispatch thread, one at a time,
// in completion order. Futures of a procxy::promise (used by async methods in the child) run
// their continuation on the thread that fulfils the promise.
//
// A future is move-only and single-consumer: get(), try_get(), then() and co_await each consume
// it. Dropping a future does not cancel the call; its result is discarded.
#pragma once

#include <atomic>
#include <cassert>
#include <chrono>
#include <condition_variable>
#include <coroutine>
#include <cstdint>
#include <exception>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <type_traits>
#include <utility>

namespace procxy {

template <class T>
class future;
template <class T>
class promise;

namespace detail {

struct state_base;

// What drives a pending state to completion: the connection it was sent on. A thread waiting on
// such a state lends itself to the driver (it may read the socket) instead of sleeping blindly.
class driver {
 public:
  virtual ~driver() = default;
  // Blocks until `st` is ready or `deadline` passes; returns whether it is ready.
  virtual bool wait(state_base& st, std::chrono::steady_clock::time_point deadline) = 0;
  // Runs `f` on the driver's dispatch thread (inline when called from it and `allow_inline`).
  virtual void post(std::function<void()> f, bool allow_inline) = 0;
  // A continuation now waits on one of the driver's states: make sure someone reads.
  virtual void continuation_attached() = 0;
};

struct state_base {
  state_base() = default;
  state_base(const state_base&) = delete;
  state_base& operator=(const state_base&) = delete;
  virtual ~state_base() = default;

  bool is_ready() const noexcept { return ready_.load(std::memory_order_acquire); }

  // Sets the error and completes. Only the first completion counts; later ones return false.
  bool fail(std::exception_ptr e) {
    if (!claim()) return false;
    error_ = std::move(e);
    finish();
    return true;
  }
  // Claims the right to complete this state (exactly one completer wins).
  bool claim() noexcept { return !claimed_.exchange(true, std::memory_order_acq_rel); }
  // Publishes the value/error written by the claimer and runs or posts the continuation.
  void finish() {
    std::function<void()> cont;
    {
      std::lock_guard lk(mu_);
      ready_.store(true, std::memory_order_release);
      cont = std::move(continuation_);
    }
    cv_.notify_all();
    // Never inline for a connection's state: the completing thread may hold its reading role.
    if (cont) dispatch(std::move(cont), false);
  }

  // Blocks until ready or deadline. Returns readiness.
  bool wait_until(std::chrono::steady_clock::time_point deadline) {
    if (is_ready()) return true;
    if (driver_) return driver_->wait(*this, deadline);
    std::unique_lock lk(mu_);
    if (deadline == std::chrono::steady_clock::time_point::max()) {
      cv_.wait(lk, [&] { return is_ready(); });
      return true;
    }
    return cv_.wait_until(lk, deadline, [&] { return is_ready(); });
  }

  // Sets what runs once the state is ready (immediately, via dispatch, if it already is).
  void set_continuation(std::function<void()> f) {
    bool attached = false;
    {
      std::lock_guard lk(mu_);
      if (!is_ready()) {
        continuation_ = std::move(f);
        attached = true;
      }
    }
    if (!attached)
      dispatch(std::move(f), false);
    else if (driver_)
      driver_->continuation_attached();
  }

  void rethrow_if_error() const {
    if (error_) std::rethrow_exception(error_);
  }
  std::exception_ptr error() const noexcept { return error_; }

  void add_ref() noexcept { refs_.fetch_add(1, std::memory_order_relaxed); }
  void release() noexcept {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

  // Set once by the connection that sends the call, before the state is shared.
  std::shared_ptr<driver> driver_;
  std::uint64_t call_id = 0;
  std::chrono::steady_clock::time_point call_deadline =
      std::chrono::steady_clock::time_point::max();

 protected:
  std::exception_ptr error_;

 private:
  void dispatch(std::function<void()> f, bool allow_inline) {
    if (driver_)
      driver_->post(std::move(f), allow_inline);
    else
      f();
  }
  std::atomic<bool> ready_{false};
  std::atomic<bool> claimed_{false};
  std::atomic<unsigned> refs_{1};
  std::mutex mu_;
  std::condition_variable cv_;
  std::function<void()> continuation_;
};

template <class T>
struct state : state_base {
  std::optional<T> value;
  template <class... A>
  bool set_value(A&&... a) {
    if (!claim()) return false;
    value.emplace(std::forward<A>(a)...);
    finish();
    return true;
  }
  T take() {
    rethrow_if_error();
    return std::move(*value);
  }
};

template <>
struct state<void> : state_base {
  bool set_value() {
    if (!claim()) return false;
    finish();
    return true;
  }
  void take() { rethrow_if_error(); }
};

// Owning handle to a state (intrusive count: one allocation per call).
template <class S>
class state_ptr {
 public:
  state_ptr() = default;
  explicit state_ptr(S* s) noexcept : s_(s) {}  // adopts one reference
  state_ptr(const state_ptr& o) noexcept : s_(o.s_) {
    if (s_) s_->add_ref();
  }
  state_ptr(state_ptr&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
  template <class U>
  requires std::is_convertible_v<U*, S*> state_ptr(const state_ptr<U>& o)
  noexcept : s_(o.get()) {  // NOLINT: implicit like shared_ptr
    if (s_) s_->add_ref();
  }
  state_ptr& operator=(state_ptr o) noexcept {
    std::swap(s_, o.s_);
    return *this;
  }
  ~state_ptr() {
    if (s_) s_->release();
  }
  S* get() const noexcept { return s_; }
  S* operator->() const noexcept { return s_; }
  S& operator*() const noexcept { return *s_; }
  explicit operator bool() const noexcept { return s_ != nullptr; }

 private:
  S* s_ = nullptr;
};

template <class T>
future<T> make_future(state_ptr<state<T>> s);

template <class F, class T>
struct then_result {
  using type = std::invoke_result_t<F, T>;
};
template <class F>
struct then_result<F, void> {
  using type = std::invoke_result_t<F>;
};

}  // namespace detail

// The value of a completed call, or the exception it completed with. Never throws on access to
// has_value()/error(); value() re-throws the error if there is one.
template <class T>
class outcome {
 public:
  explicit outcome(std::exception_ptr e) : error_(std::move(e)) {}
  explicit outcome(T v) : value_(std::move(v)) {}
  bool has_value() const noexcept { return value_.has_value(); }
  explicit operator bool() const noexcept { return has_value(); }
  T& value() & {
    if (error_) std::rethrow_exception(error_);
    return *value_;
  }
  T&& value() && {
    if (error_) std::rethrow_exception(error_);
    return std::move(*value_);
  }
  std::exception_ptr error() const noexcept { return error_; }

 private:
  std::optional<T> value_;
  std::exception_ptr error_;
};

template <>
class outcome<void> {
 public:
  outcome() = default;
  explicit outcome(std::exception_ptr e) : error_(std::move(e)) {}
  bool has_value() const noexcept { return !error_; }
  explicit operator bool() const noexcept { return has_value(); }
  void value() const {
    if (error_) std::rethrow_exception(error_);
  }
  std::exception_ptr error() const noexcept { return error_; }

 private:
  std::exception_ptr error_;
};

template <class T>
class [[nodiscard]] future {
 public:
  using value_type = T;

  future() = default;
  future(future&&) noexcept = default;
  future& operator=(future&&) noexcept = default;

  // Whether this future still refers to a result (false after it was consumed or moved from).
  bool valid() const noexcept { return static_cast<bool>(s_); }
  // Whether the result is there; never blocks.
  bool ready() const noexcept {
    assert(valid());
    return s_->is_ready();
  }

  void wait() const { s_->wait_until(std::chrono::steady_clock::time_point::max()); }
  template <class Rep, class Period>
  std::future_status wait_for(std::chrono::duration<Rep, Period> d) const {
    return wait_until(std::chrono::steady_clock::now() + d);
  }
  template <class Clock, class Duration>
  std::future_status wait_until(std::chrono::time_point<Clock, Duration> tp) const {
    auto deadline =
        std::chrono::steady_clock::now() +
        std::chrono::duration_cast<std::chrono::steady_clock::duration>(tp - Clock::now());
    return s_->wait_until(deadline) ? std::future_status::ready : std::future_status::timeout;
  }

  // The value, or throws what the call failed with. Consumes the future.
  T get() {
    assert(valid() && "procxy: get() on a consumed or moved-from future");
    wait();
    auto s = std::move(s_);
    return s->take();
  }

  // The value or the error, without throwing. Consumes the future.
  outcome<T> try_get() {
    assert(valid());
    wait();
    auto s = std::move(s_);
    if (auto e = s->error()) return outcome<T>(e);
    if constexpr (std::is_void_v<T>)
      return outcome<T>();
    else
      return outcome<T>(s->take());
  }

  // Runs `f(value)` when the result is there and returns a future of what f returns. If this
  // future fails, f is not called and the error propagates. For a proxy's futures f runs on the
  // proxy's dispatch thread; for a promise's, on the thread that fulfils it.
  template <class F>
  auto then(F f) -> future<typename detail::then_result<F, T>::type> {
    using R = typename detail::then_result<F, T>::type;
    assert(valid());
    detail::state_ptr<detail::state<R>> next(new detail::state<R>());
    auto src = std::move(s_);
    auto* raw = src.get();
    raw->set_continuation([src, next, f = std::move(f)]() mutable {
      try {
        if constexpr (std::is_void_v<T>) {
          src->take();
          if constexpr (std::is_void_v<R>) {
            f();
            next->set_value();
          } else {
            next->set_value(f());
          }
        } else {
          if constexpr (std::is_void_v<R>) {
            f(src->take());
            next->set_value();
          } else {
            next->set_value(f(src->take()));
          }
        }
      } catch (...) {
        next->fail(std::current_exception());
      }
    });
    return detail::make_future(std::move(next));
  }

  // Runs `f(outcome<T>)` when the result is there, error or not. Same thread rules as then().
  template <class F>
  void on_complete(F f) {
    assert(valid());
    auto src = std::move(s_);
    auto* raw = src.get();
    raw->set_continuation([src, f = std::move(f)]() mutable {
      if (auto e = src->error()) {
        f(outcome<T>(e));
      } else if constexpr (std::is_void_v<T>) {
        f(outcome<T>());
      } else {
        f(outcome<T>(src->take()));
      }
    });
  }

  // co_await support: suspends until ready; resumes on the proxy's dispatch thread (or the
  // fulfilling thread for a promise's future); yields get().
  struct awaiter {
    detail::state_ptr<detail::state<T>> s;
    bool await_ready() const noexcept { return s->is_ready(); }
    void await_suspend(std::coroutine_handle<> h) {
      s->set_continuation([h] { h.resume(); });
    }
    T await_resume() { return s->take(); }
  };
  awaiter operator co_await() && { return awaiter{std::move(s_)}; }
  awaiter operator co_await() & { return awaiter{std::move(s_)}; }

 private:
  template <class U>
  friend future<U> detail::make_future(detail::state_ptr<detail::state<U>> s);
  template <class U>
  friend class promise;
  explicit future(detail::state_ptr<detail::state<T>> s) : s_(std::move(s)) {}
  detail::state_ptr<detail::state<T>> s_;
};

template <class T>
future<T> detail::make_future(state_ptr<state<T>> s) {
  return future<T>(std::move(s));
}

// The producing side of a future, for async methods in the child:
//
//   procxy::future<int> Worker::slow() {
//     procxy::promise<int> p;
//     auto f = p.get_future();
//     std::thread([p = std::move(p)]() mutable { p.set_value(42); }).detach();
//     return f;
//   }
//
// A promise destroyed without a value fails its future with std::future_error(broken_promise).
template <class T>
class promise {
 public:
  promise() : s_(new detail::state<T>()) {}
  promise(promise&&) noexcept = default;
  promise& operator=(promise&& o) noexcept {
    abandon();
    s_ = std::move(o.s_);
    return *this;
  }
  ~promise() { abandon(); }

  future<T> get_future() { return future<T>(s_); }
  template <class... A>
  void set_value(A&&... a) {
    s_->set_value(std::forward<A>(a)...);
  }
  void set_exception(std::exception_ptr e) { s_->fail(std::move(e)); }

 private:
  void abandon() {
    if (s_ && !s_->is_ready())
      s_->fail(std::make_exception_ptr(std::future_error(std::future_errc::broken_promise)));
  }
  detail::state_ptr<detail::state<T>> s_;
};

}  // namespace procxy
