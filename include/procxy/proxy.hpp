// procxy/proxy.hpp — spawn<T>() and proxy<T>: an object of T living in a child process.
//
//   PROCXY_CLASS(Calculator, add, divide);                  // once, next to the class
//   auto calc = procxy::spawn<Calculator>({.call_timeout = 5s}, 4);
//   double s = calc.add(5, 3).get();                        // described methods
//   double t = calc.call<&Calculator::add>(5, 3).get();     // macro-free form (same binary)
//
// Lifetime. proxy<T> is move-only and owns the child: its destructor calls terminate(), which
// runs T's destructor in the child, waits for the child to exit (terminate_grace, then SIGTERM,
// then SIGKILL) and reaps it. Calls pending at that point fail with procxy::terminated. A moved-
// from proxy has no child; calls through it fail with procxy::terminated.
//
// Threads. Any number of threads may call one proxy at once. The child runs calls one at a
// time, in the order they arrive, on its object thread (docs/design.md "Threads").
#pragma once

#include <chrono>
#include <memory>
#include <type_traits>
#include <utility>

#include "procxy/detail/core.hpp"
#include "procxy/detail/method.hpp"
#include "procxy/future.hpp"
#include "procxy/options.hpp"

namespace procxy {

namespace detail {

// One proxied method: a callable member of proxy<T> with the method's exact parameter types,
// so overload resolution and braced initializers work as on the real object.
template <auto MP, class Params = typename member_traits<decltype(MP)>::params>
struct method_fn;
template <auto MP, class... P>
struct method_fn<MP, std::tuple<P...>> {
  static_assert((check_param<P>() && ...) &&
                check_result<typename member_traits<decltype(MP)>::result>());
  future<call_result_t<MP>> operator()(P... p) const {
    return issue_call<MP, std::remove_cvref_t<P>...>(binding_, p...);
  }
  const binding* binding_ = nullptr;
};

// Several described overloads of one name.
template <class... F>
struct overload_set : F... {
  using F::operator()...;
  void procxy_bind_all(const binding* b) noexcept { ((static_cast<F&>(*this).binding_ = b), ...); }
};
template <class F>
void bind_fn(F& f, const binding* b) noexcept {
  if constexpr (requires { f.procxy_bind_all(b); })
    f.procxy_bind_all(b);
  else
    f.binding_ = b;
}

// T, as a type that depends on D (delays instantiation to a template's use).
template <class D, class T>
struct dependent_type {
  using type = T;
};
template <class D, class T>
using dependent_t = typename dependent_type<D, T>::type;

// Instantiates (and so registers) the method ids behind a described member.
template <auto MP, class P>
void register_fn(method_fn<MP, P>*) {
  (void)method_id<MP>;
}
template <class... F>
void register_fn(overload_set<F...>*) {
  (register_fn(static_cast<F*>(nullptr)), ...);
}

// Adds a described member's (id, label) to the parent's description (nothing odr-used).
template <auto MP, class P>
void describe_fn(described_members& out, method_fn<MP, P>*) {
  out.emplace_back(tag_id<method_tag<MP>>(), member_label<MP>());
}
template <class... F>
void describe_fn(described_members& out, overload_set<F...>*) {
  (describe_fn(out, static_cast<F*>(nullptr)), ...);
}

template <class C, class Sig>
using member_ptr_t = Sig C::*;

// The methods of an undescribed class: none (use call<&T::m>).
struct no_methods {
  void procxy_bind(const binding*) noexcept {}
};
no_methods procxy_methods_of(...);  // fallback; PROCXY_CLASS declares a better match by ADL

template <class T>
using methods_t = decltype(procxy_methods_of(static_cast<T*>(nullptr)));

template <class T>
const char* class_name() {
  static const std::string name = demangle(typeid(T).name());
  return name.c_str();
}

}  // namespace detail

template <class T>
class call_view;
namespace detail {
template <class T>
call_view<T> make_view(std::shared_ptr<call_target> target, call_options o);
}  // namespace detail

// The call API shared by proxy<T> and call_view<T>.
template <class T, class Self>
class call_api : public detail::methods_t<T> {
  using methods = detail::methods_t<T>;
  static_assert(
      !requires { &methods::pid; } && !requires { &methods::running; } &&
          !requires { &methods::started; } && !requires { &methods::terminate; } &&
          !requires { &methods::stats; } && !requires { &methods::call; } &&
          !requires { &methods::with; } && !requires { &methods::with_timeout; } &&
          !requires { &methods::idempotent; },
      "procxy: PROCXY_CLASS lists a method named pid, running, started, terminate, stats, "
      "call, with, with_timeout or idempotent, which proxy<T> uses itself; leave it out "
      "of the description and call it as proxy.call<&T::name>(args...)");

 public:
  // Calls any public method of T by member pointer. Works without PROCXY_CLASS when the child is
  // this executable (reexec or fork); a worker binary needs the method described.
  template <auto MP, class... A>
  auto call(A&&... a) const {
    using traits = detail::member_traits<decltype(MP)>;
    static_assert(
        std::is_base_of_v<typename traits::cls, T> || std::is_same_v<typename traits::cls, T>,
        "procxy: call<&C::m>() names a method of another class");
    return detail::method_fn<MP>{&procxy_self().procxy_binding_}(std::forward<A>(a)...);
  }

  // The same proxy with other options for the calls made through the returned view:
  //   calc.with_timeout(100ms).add(1, 2);
  //   calc.with({.timeout = 1s, .retries = 2}).lookup(key);   // lookup is idempotent
  // The view shares the child; it is cheap, and meant to be used within one expression or scope.
  call_view<T> with(call_options o) const {
    return detail::make_view<T>(procxy_self().procxy_core_, procxy_merge(o));
  }
  call_view<T> with_timeout(std::chrono::milliseconds t) const {
    return with(call_options{.timeout = t, .retries = procxy_self().procxy_binding_.retries});
  }
  // Marks the calls made through the view idempotent: after a timeout they are sent again, up to
  // `retries` times. Only meaningful with a timeout (the proxy's or with_timeout's).
  call_view<T> idempotent(int retries = 2) const {
    return with(call_options{.timeout = procxy_self().procxy_binding_.timeout, .retries = retries});
  }

 protected:
  call_api() = default;

 private:
  const Self& procxy_self() const { return static_cast<const Self&>(*this); }
  call_options procxy_merge(call_options o) const {
    const auto& b = procxy_self().procxy_binding_;
    if (o.timeout.count() < 0) o.timeout = b.timeout;
    return o;
  }
};

template <class T>
class proxy;
namespace detail {
template <class T>
proxy<T> make_proxy(std::shared_ptr<call_target> target);
}  // namespace detail

template <class T>
class proxy : public call_api<T, proxy<T>> {
  using methods = detail::methods_t<T>;
  friend class call_api<T, proxy<T>>;

 public:
  proxy(proxy&& o) noexcept
      : call_api<T, proxy<T>>(std::move(o)), procxy_core_(std::move(o.procxy_core_)) {
    procxy_rebind();
    o.procxy_rebind();
  }
  proxy& operator=(proxy&& o) noexcept {
    if (this != &o) {
      procxy_release();
      // The faces hold only a pointer to procxy_binding_, which procxy_rebind() sets; they are
      // not assigned (a property face has no assignment at all).
      procxy_core_ = std::move(o.procxy_core_);
      procxy_rebind();
      o.procxy_rebind();
    }
    return *this;
  }
  ~proxy() { procxy_release(); }

  // The child's process id (valid until the proxy is destroyed, even after the child exited).
  int pid() const noexcept { return procxy_core_ ? procxy_core_->pid() : -1; }
  // Whether the child process is alive (it may be alive but disconnected after a protocol error).
  bool running() const { return procxy_core_ && procxy_core_->running(); }
  // Completes when the child has constructed the object; fails with spawn_error if it could not.
  future<void> started() { return procxy_core_->started(); }
  // Ends the child: pending calls fail with terminated, the object's destructor runs in the
  // child (within terminate_grace), then SIGTERM, SIGKILL and reaping. Idempotent, thread-safe,
  // and legal from inside the proxy's own callbacks.
  void terminate() {
    if (procxy_core_) procxy_core_->terminate();
  }
  // Connection counters (frames and bytes each way, write syscalls, pending calls, timeouts).
  // Events: delivered, dropped, subscribe messages, property updates, listeners per event.
  channel_stats stats() const {
    if (!procxy_core_) return {};
    return procxy_core_->stats();
  }

 private:
  template <class U, class... A>
  friend proxy<U> spawn(const spawn_options& opts, A&&... args);
  template <class U>
  friend proxy<U> detail::make_proxy(std::shared_ptr<detail::call_target> target);
  explicit proxy(std::shared_ptr<detail::call_target> core) : procxy_core_(std::move(core)) {
    procxy_rebind();
  }
  void procxy_rebind() noexcept {
    procxy_binding_.core = procxy_core_.get();
    procxy_binding_.timeout =
        procxy_core_ ? procxy_core_->default_timeout() : std::chrono::milliseconds{0};
    procxy_binding_.retries = 0;
    this->methods::procxy_bind(&procxy_binding_);
  }
  void procxy_release() {
    if (procxy_core_) {
      procxy_core_->terminate();
      procxy_core_.reset();
    }
    procxy_rebind();
  }
  std::shared_ptr<detail::call_target> procxy_core_;
  detail::binding procxy_binding_;
};

namespace detail {
// One local child of T, as a call target (what spawn<T> puts behind its proxy; a pool holds
// several).
template <class T, class... A>
std::shared_ptr<call_target> spawn_target(const spawn_options& opts, A&&... args) {
  auto& buf = scratch_buffer();
  std::uint64_t id;
  if constexpr (interface_only<T>())  // the child side has the constructor; this binary may not
    id = tag_id<ctor_tag<T, ctor_key_t<ctor_arg_t<A>>...>>();
  else
    id = ctor_id<T, ctor_arg_t<A>...>;
  encode_request(buf, message_kind::construct, id, nullptr,
                 std::string_view(ctor_signature<T, A...>()), describe_members<T>(), args...);
  byte_buffer frame;
  frame.append(buf.data(), buf.size());
  frame.descriptors() = std::move(buf.descriptors());
  return proxy_core::start(opts, frame, class_name<T>(), ctor_signature<T, A...>());
}

// A typed face on any call target (a pool, a restarting child, a remote one: call_target.hpp).
template <class T>
proxy<T> make_proxy(std::shared_ptr<call_target> target) {
  return proxy<T>(std::move(target));
}
}  // namespace detail

// proxy<T>::with(...)'s result: the described methods and call<&T::m>() with other call options.
// Holds the child alive (shared) but does not own it: terminate() through the proxy still ends
// it, and calls through the view then fail with procxy::terminated. Neither copyable nor movable
// (its members point into it); use it as a temporary or a local.
template <class T>
class call_view : public call_api<T, call_view<T>> {
  using methods = detail::methods_t<T>;
  friend class call_api<T, call_view<T>>;

 public:
  call_view(const call_view&) = delete;
  call_view& operator=(const call_view&) = delete;

 private:
  template <class U>
  friend call_view<U> detail::make_view(std::shared_ptr<detail::call_target> target,
                                        call_options o);
  call_view(std::shared_ptr<detail::call_target> core, call_options o)
      : procxy_core_(std::move(core)) {
    procxy_binding_.core = procxy_core_.get();
    procxy_binding_.timeout = o.timeout.count() < 0 ? std::chrono::milliseconds{0} : o.timeout;
    procxy_binding_.retries = o.retries;
    this->methods::procxy_bind(&procxy_binding_);
  }
  std::shared_ptr<detail::call_target> procxy_core_;
  detail::binding procxy_binding_;
};

namespace detail {
// A view on any call target (a pool's member, or the member of a key).
template <class T>
call_view<T> make_view(std::shared_ptr<call_target> target, call_options o) {
  return call_view<T>(std::move(target), o);
}
}  // namespace detail

// Starts a child process and constructs a T there from `args`. Returns at once: calls made before
// the child is up are queued and run in order once it is. Throws spawn_error if the child process
// cannot be started; a constructor that throws fails started() and every call with spawn_error
// (the constructor's exception nested).
template <class T, class... A>
proxy<T> spawn(const spawn_options& opts = {}, A&&... args) {
  // What the child does: decodes each argument and passes it on (string-like ones as a string).
  static_assert(std::is_constructible_v<T, detail::passed_t<detail::ctor_arg_t<A>>...>,
                "procxy: spawn<T>(options, args...) — T has no constructor taking these arguments");
  return proxy<T>(detail::spawn_target<T>(opts, std::forward<A>(args)...));
}

}  // namespace procxy
