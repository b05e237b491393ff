// procxy/shared.hpp — one child per key in a process: share<T>(key, options, args...).
//
//   procxy::shared<Db> a = procxy::share<Db>("orders", {}, "/var/db/orders.sqlite");
//   procxy::shared<Db> b = procxy::share<Db>("orders", {}, "/var/db/orders.sqlite");  // same child
//   a->query("...");
//
// The same key, class, constructor arguments and spawn options give the same child while anyone
// holds it; the child ends (terminate, as ~proxy) when the last holder lets go. Concurrent first
// uses from many threads start exactly one child. A different key, class, argument or option is
// a different child. A child that has ended (a crash) is not handed out again: the next share()
// starts a new one, while holders of the old one keep it (and its failures). docs/design.md
// "Shared children".
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "procxy/proxy.hpp"

namespace procxy {

// A shared handle on one child: a std::shared_ptr to its proxy (h->add(1, 2)).
template <class T>
using shared = std::shared_ptr<proxy<T>>;

namespace detail {
// What tells two spawn_options apart, as bytes (src/shared.cpp): every field's value; a hook
// (on_exit, on_callback_error, callback_executor) by whether it is set and the type of its target.
std::string options_identity(const spawn_options& o);
// The registry: the live proxy under `identity`, or the one `make` returns (made under the
// registry's lock, so concurrent callers get the same one). `alive` says whether a found proxy
// may be handed out again.
std::shared_ptr<void> find_or_make_shared(const std::string& identity,
                                          const std::function<std::shared_ptr<void>()>& make,
                                          bool (*alive)(const std::shared_ptr<void>&));
}  // namespace detail

template <class T, class... A>
shared<T> share(std::string_view key, const spawn_options& opts = {}, A&&... args) {
  static_assert(std::is_constructible_v<T, detail::passed_t<detail::ctor_arg_t<A>>...>,
                "procxy: share<T>(key, options, args...) — T has no constructor taking these "
                "arguments");
  // The identity: key, class, the construct message (constructor and encoded arguments), options.
  auto& buf = detail::scratch_buffer();
  detail::encode_request(buf, detail::message_kind::construct, 0, nullptr,
                         std::string_view(detail::ctor_signature<T, A...>()), args...);
  std::string identity(key);
  identity += '\0';
  identity += typeid(T).name();
  identity += '\0';
  identity.append(reinterpret_cast<const char*>(buf.data()), buf.size());
  identity += '\0';
  identity += detail::options_identity(opts);
  auto p = detail::find_or_make_shared(
      identity,
      [&]() -> std::shared_ptr<void> {
        return std::make_shared<proxy<T>>(spawn<T>(opts, std::forward<A>(args)...));
      },
      [](const std::shared_ptr<void>& v) { return static_cast<proxy<T>*>(v.get())->running(); });
  return std::static_pointer_cast<proxy<T>>(p);
}

}  // namespace procxy
