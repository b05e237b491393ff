// procxy/detail/method.hpp — the typed layer: method ids, the child's method tables and
// constructor registry, the child-side invoker and the parent-side call.
//
// Ids. A method is named by the mangled name of method_tag<&C::m> (the member pointer, so
// overloads differ), a constructor by ctor_tag<C, Args...>; the wire carries a 64-bit FNV-1a hash
// of that name. Mangled names are the same in every process built from the same code, so the
// re-executed child, a forked child and a separate worker binary agree without any IDL.
//
// Tables. A child must find code from a wire id, so ids are registered at static-initialisation
// time by inline variables that the parent's call sites (and PROCXY_CLASS) instantiate. The tables
// are written only during static initialisation and read-only afterwards: a vtable built by the
// linker, not a mutable global registry (docs/design.md "Method tables").
#pragma once

#include <cstdint>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <unordered_map>
#include <utility>

#include "procxy/detail/call_target.hpp"
#include "procxy/detail/callback.hpp"
#include "procxy/detail/connection.hpp"
#include "procxy/detail/event_hub.hpp"
#include "procxy/detail/print.hpp"
#include "procxy/detail/remote_error.hpp"
#include "procxy/future.hpp"

namespace procxy::detail {

constexpr std::uint64_t hash_name(std::string_view s) noexcept {
  std::uint64_t h = 14695981039346656037ull;
  for (char c : s) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ull;
  }
  return h;
}

template <auto MP>
struct method_tag {};
template <class C, class... A>
struct ctor_tag {};

// The structure a member or constructor carries (codec.hpp schema_builder): a method's result and
// parameters, an event's or property's type, a constructor's arguments; not the class's own.
template <class MP>
struct member_traits;  // below
template <class M>
struct data_member;
template <class T, class C>
struct data_member<T C::*> {
  using type = T;
};
template <class Tag>
struct tag_schema;
template <auto MP>
struct tag_schema<method_tag<MP>> {
  static void add(schema_builder& b) {
    using M = decltype(MP);
    if constexpr (std::is_member_function_pointer_v<M>) {
      b.add<typename member_traits<M>::result>();
      add_all(b, static_cast<typename member_traits<M>::params*>(nullptr));
    } else {
      b.add<typename data_member<M>::type>();
    }
  }
  template <class... P>
  static void add_all(schema_builder& b, std::tuple<P...>*) {
    (b.add<P>(), ...);
  }
};
template <class C, class... A>
struct tag_schema<ctor_tag<C, A...>> {
  static void add(schema_builder& b) { (b.add<A>(), ...); }
};

// A member's or constructor's wire id: its name as the compiler spells the tag (the class, the
// member, the parameter types) and the structure of every type it carries, so that a parent and
// a child built from different descriptions never agree on an id by accident.
template <class Tag>
std::uint64_t tag_id() {
  static const std::uint64_t id = [] {
    schema_builder b;
    tag_schema<Tag>::add(b);
    return hash_name(std::string(typeid(Tag).name()) + '|' + b.str());
  }();
  return id;
}

// "Calculator::add" from the compiler's spelling of the template argument.
std::string member_name_from_signature(std::string_view pretty);
template <auto MP>
const char* member_name() {
  static const std::string name = member_name_from_signature(__PRETTY_FUNCTION__);
  return name.c_str();
}

// "Counter::add: int (worker_demo::Counter::*)(int)": a described member as messages name it.
std::string readable_type_name(const std::type_info& t);
template <auto MP>
const char* member_label() {
  static const std::string label =
      std::string(member_name<MP>()) + ": " + readable_type_name(typeid(decltype(MP)));
  return label.c_str();
}

// What the parent's description of a class says it will use: (wire id, label) per member. Sent
// with the construct request; the child refuses (spawn_error naming each difference) if it does
// not serve every one, so a parent and a worker or module built from different descriptions
// never call into the wrong code.
using described_members = std::vector<std::pair<std::uint64_t, std::string>>;

// ---- member pointer traits ---------------------------------------------------------------------

template <class MP>
struct member_traits;
#define PROCXY_DETAIL_MEMBER_TRAITS(QUAL)              \
  template <class R, class C, class... P>              \
  struct member_traits<R (C::*)(P...) QUAL> {          \
    using result = R;                                  \
    using cls = C;                                     \
    using params = std::tuple<P...>;                   \
    static constexpr std::size_t arity = sizeof...(P); \
  };
PROCXY_DETAIL_MEMBER_TRAITS()
PROCXY_DETAIL_MEMBER_TRAITS(const)
PROCXY_DETAIL_MEMBER_TRAITS(noexcept)
PROCXY_DETAIL_MEMBER_TRAITS(const noexcept)
#undef PROCXY_DETAIL_MEMBER_TRAITS

// What an argument is stored as while it crosses: string_view and const char* arrive as strings.
template <class P>
struct wire_type {
  using type = std::remove_cvref_t<P>;
};
template <>
struct wire_type<std::string_view> {
  using type = std::string;
};
template <>
struct wire_type<const char*> {
  using type = std::string;
};
template <class P>
using wire_t = typename wire_type<std::remove_cvref_t<P>>::type;

template <class P>
decltype(auto) pass_arg(wire_t<P>& v) {
  if constexpr (std::is_same_v<std::remove_cvref_t<P>, const char*>)
    return v.c_str();
  else if constexpr (std::is_lvalue_reference_v<P>)
    return static_cast<wire_t<P>&>(v);
  else
    return std::move(v);
}

// What pass_arg<P> hands the callee.
template <class P>
using passed_t = decltype(pass_arg<P>(std::declval<wire_t<P>&>()));

// Values are decoded into a default-constructed object. A described class without a default
// constructor says so; any other class without one is not transferable at all, and says why.
template <class W>
constexpr void check_default_constructible() {
  if constexpr (!std::is_void_v<W> && !std::is_default_constructible_v<W>) {
    if constexpr (is_described<W>)
      static_assert(always_false<W>,
                    "procxy: a described value type must be default-constructible to be decoded; "
                    "add a default constructor (it may be private)");
    else
      reject_untransferable<W>();
  }
}

template <class P>
constexpr bool check_param() {
  static_assert(!(std::is_lvalue_reference_v<P> && !std::is_const_v<std::remove_reference_t<P>>),
                "procxy: a method parameter is a non-const lvalue reference; the callee's changes "
                "could not reach the caller. Take it by value or const reference and return the "
                "result instead");
  check_default_constructible<wire_t<P>>();
  return true;
}

// Async results: a method returning procxy::future<R> or std::future<R> replies when it completes.
template <class R>
struct async_traits {
  static constexpr bool is_async = false;
  using value = R;
};
template <class R>
struct async_traits<procxy::future<R>> {
  static constexpr bool is_async = true;
  using value = R;
};
template <class R>
struct async_traits<std::future<R>> {
  static constexpr bool is_async = true;
  using value = R;
};

template <class R>
constexpr bool check_result() {
  check_default_constructible<typename async_traits<R>::value>();
  return true;
}

// The value type a call of MP yields in the parent.
template <auto MP>
using call_result_t = typename async_traits<typename member_traits<decltype(MP)>::result>::value;

// ---- the child's side --------------------------------------------------------------------------

class child_server;

// Per-thread buffer frames are built in (no allocation per call once warm).
byte_buffer& scratch_buffer();

// Sends reply frames for one request.
struct reply_sink {
  std::shared_ptr<connection> conn;
  std::uint64_t id;
  const char* what;

  // The child's property snapshot goes out before the reply it belongs to (object thread).
  void before() const { conn->before_reply(); }
  template <class R>
  void value(const R& v) const {
    before();
    byte_buffer& buf = scratch_buffer();
    registration_scope scope(&conn->callbacks());  // a function in the result is lent only if sent
    encode_reply_value(buf, id, &conn->callbacks(), v);
    conn->check_size(buf, what);  // too large: the caller's catch sends an error reply instead
    scope.commit();
    if (conn->tracing()) {
      std::string t = "send reply #" + std::to_string(id) + " " + what + " = ";
      print_value(t, v);
      conn->trace(t);
    }
    post(buf);
  }
  void value() const {
    before();
    byte_buffer& buf = scratch_buffer();
    encode_reply_void(buf, id);
    if (conn->tracing()) conn->trace("send reply #" + std::to_string(id) + " " + what + " = void");
    post(buf);
  }
  // Call from inside a catch block.
  void current_exception() const;
  // Sends a reply. A connection already closed (the parent is gone, or broke the channel) has
  // nobody to read it: the reply is dropped and the child ends when its reader sees the end,
  // instead of the method's caller getting an exception it cannot handle.
  void post(byte_buffer& buf) const {
    try {
      conn->send_reply(buf);  // with the descriptors the reply carries
    } catch (const terminated&) {
    }
  }
};

using method_invoker = void (*)(void* obj, decoder& args, reply_sink& reply);
struct method_entry {
  const char* name;
  method_invoker invoke;
  const char* label = "";  // member_label: name and signature
};
using method_table = std::unordered_map<std::uint64_t, method_entry>;

template <class C>
method_table& methods_of() {
  static method_table& table = *new method_table;  // never destroyed: exit() on another thread
  return table;                                    // must not pull it from under the object thread
}
std::uint64_t register_method(method_table& table, std::uint64_t id, method_entry e);

// An object the child serves: type-erased owner plus its method table.
struct served_object {
  void* obj = nullptr;
  void (*destroy)(void*) = nullptr;
  const method_table* methods = nullptr;
  const member_tables* members = nullptr;  // events and properties
  const char* class_name = "";
};
using ctor_fn = served_object (*)(decoder& args);
struct ctor_entry {
  const char* name;
  ctor_fn make;
  const method_table* methods = nullptr;   // what the class serves here, checked against the
  const member_tables* members = nullptr;  // parent's described_members before constructing
};
std::uint64_t register_ctor(std::uint64_t id, ctor_entry e);

template <class R>
void send_async(reply_sink reply, R&& r) {
  using V = typename async_traits<std::remove_cvref_t<R>>::value;
  if constexpr (is_specialization_of<std::remove_cvref_t<R>, procxy::future>) {
    r.on_complete([reply](outcome<V> o) {
      try {
        if constexpr (std::is_void_v<V>) {
          o.value();
          reply.value();
        } else {
          reply.value(o.value());
        }
      } catch (...) {
        reply.current_exception();
      }
    });
  } else {
    std::thread([reply, f = std::move(r)]() mutable {
      try {
        if constexpr (std::is_void_v<V>) {
          f.get();
          reply.value();
        } else {
          reply.value(f.get());
        }
      } catch (...) {
        reply.current_exception();
      }
    }).detach();
  }
}

template <auto MP, class... P, std::size_t... I>
void invoke_with(void* obj, decoder& d, reply_sink& reply, std::index_sequence<I...>) {
  using traits = member_traits<decltype(MP)>;
  using C = typename traits::cls;
  using R = typename traits::result;
  std::tuple<wire_t<P>...> args;
  (d(std::get<I>(args)), ...);
  if (!d.reader().at_end()) throw protocol_error("procxy: trailing bytes after call arguments");
  if (reply.conn->tracing())
    reply.conn->trace("recv call #" + std::to_string(reply.id) + " " + reply.what +
                      print_args(std::get<I>(args)...));
  try {
    auto& self = *static_cast<C*>(obj);
    if constexpr (std::is_void_v<R>) {
      (self.*MP)(pass_arg<P>(std::get<I>(args))...);
      reply.value();
    } else if constexpr (async_traits<R>::is_async) {
      send_async(reply, (self.*MP)(pass_arg<P>(std::get<I>(args))...));
    } else {
      reply.value((self.*MP)(pass_arg<P>(std::get<I>(args))...));
    }
  } catch (...) {
    reply.current_exception();
  }
}

template <auto MP, class Tuple>
struct invoker;
template <auto MP, class... P>
struct invoker<MP, std::tuple<P...>> {
  static void invoke(void* obj, decoder& d, reply_sink& reply) {
    invoke_with<MP, P...>(obj, d, reply, std::index_sequence_for<P...>{});
  }
};

template <auto MP>
std::uint64_t register_member() {
  using traits = member_traits<decltype(MP)>;
  return register_method(
      methods_of<typename traits::cls>(), tag_id<method_tag<MP>>(),
      method_entry{member_name<MP>(), &invoker<MP, typename traits::params>::invoke,
                   member_label<MP>()});
}
// Instantiated by every call site and by PROCXY_CLASS, in the parent and the child alike.
template <auto MP>
inline const std::uint64_t method_id = register_member<MP>();

template <class C, class... A, std::size_t... I>
served_object construct_with(decoder& d, std::index_sequence<I...>) {
  std::tuple<wire_t<A>...> args;
  (d(std::get<I>(args)), ...);
  if (!d.reader().at_end())
    throw protocol_error("procxy: trailing bytes after constructor arguments");
  served_object s;
  s.obj = new C(pass_arg<A>(std::get<I>(args))...);
  s.destroy = [](void* p) { delete static_cast<C*>(p); };
  s.methods = &methods_of<C>();
  s.members = &members_of<C>();
  return s;
}

// The key a constructor is registered and asked for under: its argument types after decay, with
// every string-like type (a literal, char*, const char*, std::string_view) as std::string, since
// they all cross as a string. So spawn<Db>(opts, ":memory:") finds PROCXY_CONSTRUCTOR(Db,
// std::string) in a worker binary, and a re-executed child built from the same spawn call.
template <class A>
struct ctor_key {
  using type = std::decay_t<A>;
};
template <>
struct ctor_key<char*> {
  using type = std::string;
};
template <>
struct ctor_key<const char*> {
  using type = std::string;
};
template <>
struct ctor_key<std::string_view> {
  using type = std::string;
};
template <class A>
using ctor_key_t = typename ctor_key<std::decay_t<A>>::type;
// What the child decodes a spawn argument of type A into and passes on: char* as const char*.
template <class A>
using ctor_arg_t =
    std::conditional_t<std::is_same_v<std::decay_t<A>, char*>, const char*, std::decay_t<A>>;

// "Db(std::string, int)", for messages about constructors.
template <class C, class... A>
const char* ctor_signature() {
  static const std::string s = [] {
    std::string out = readable_type_name(typeid(C)) + "(";
    [[maybe_unused]] const char* sep = "";
    ((out += sep, out += readable_type_name(typeid(ctor_key_t<A>)), sep = ", "), ...);
    return out + ")";
  }();
  return s.c_str();
}

// The face PROCXY_CLASS / PROCXY_INTERFACE declared for C (found by ADL); ill-formed for an
// undescribed class, so each use below asks `requires` first.
template <class C>
using face_of_t = decltype(procxy_methods_of(static_cast<C*>(nullptr)));

// Whether C is described with PROCXY_INTERFACE (the parent does not link C's members): then
// nothing in the parent may instantiate what the child runs (invokers, constructors).
template <class C>
constexpr bool interface_only() {
  if constexpr (requires { face_of_t<C>::procxy_interface_only; })
    return face_of_t<C>::procxy_interface_only;
  else
    return false;
}
// The parent's description of C (empty for an undescribed class).
template <class C>
described_members describe_members() {
  if constexpr (requires { face_of_t<C>::template procxy_describe<>(); })
    return face_of_t<C>::template procxy_describe<>();
  else
    return {};
}
// Registers C's described members for the child (idempotent), if C is described.
template <class C>
void register_described_members() {
  if constexpr (requires { face_of_t<C>::template procxy_register<>(); })
    face_of_t<C>::template procxy_register<>();
}

template <class C, class... A>
std::uint64_t register_constructor() {
  static const std::string name = demangle(typeid(C).name());
  register_described_members<C>();  // a worker of a PROCXY_INTERFACE class: nothing else does
  return register_ctor(
      tag_id<ctor_tag<C, ctor_key_t<A>...>>(),
      ctor_entry{
          name.c_str(),
          [](decoder& d) { return construct_with<C, A...>(d, std::index_sequence_for<A...>{}); },
          &methods_of<C>(), &members_of<C>()});
}
template <class C, class... A>
inline const std::uint64_t ctor_id = register_constructor<C, A...>();

// ---- the parent's side -------------------------------------------------------------------------

template <class R>
void decode_reply(state_base& st, message_kind kind, decoder& d, const reply_context& ctx) {
  auto& s = static_cast<state<R>&>(st);
  if (kind == message_kind::reply_error) {
    s.fail(decode_reply_error(d, ctx.what, ctx.peer_pid));
    return;
  }
  if constexpr (std::is_void_v<R>) {
    decode_reply_value<void>(d);
    s.set_value();
  } else {
    s.set_value(decode_reply_value<R>(d));
  }
}

// What a proxy's method members call through: the target and the call options in effect.
struct binding {
  call_target* core = nullptr;
  std::chrono::milliseconds timeout{0};  // 0: none
  int retries = 0;                       // idempotent re-sends after a timeout
};

// Sends a call of MP with arguments already of the parameter types P... (the encoder takes
// string_view and const char* as strings, so nothing is copied on the way).
template <auto MP, class... P>
future<call_result_t<MP>> issue_call(const binding* b, const P&... a) {
  call_target* core = b ? b->core : nullptr;
  using R = call_result_t<MP>;
  using traits = member_traits<decltype(MP)>;
  static_assert(std::is_class_v<typename traits::cls>);
  state_ptr<state<R>> st(new state<R>());
  auto result = make_future(st);
  if (core == nullptr) {
    st->fail(std::make_exception_ptr(terminated("procxy: call through a moved-from proxy")));
    return result;
  }
  // The deadline counts from the call, encoding the arguments included (a 64 MiB argument with a
  // 5 ms timeout fails after about 5 ms, not 5 ms after it was copied).
  const clock::time_point deadline = core->deadline_for(b->timeout);
  // The wire id; registering the invoker too (for a child that is this binary) unless the class
  // is a PROCXY_INTERFACE, whose members this process may not link.
  std::uint64_t id;
  if constexpr (interface_only<typename traits::cls>())
    id = tag_id<method_tag<MP>>();
  else
    id = method_id<MP>;
  byte_buffer& buf = scratch_buffer();
  connection* channel = nullptr;
  try {
    channel = &core->channel_for_call();  // a pool picks its member here
  } catch (...) {
    st->fail(std::current_exception());
    return result;
  }
  auto& conn = *channel;
  try {
    registration_scope scope(&conn.callbacks());  // functions among the arguments: lent if sent
    encode_request(buf, message_kind::call, id, &conn.callbacks(), a...);
    conn.check_size(buf, member_name<MP>());
    scope.commit();
  } catch (...) {
    st->fail(std::current_exception());
    return result;
  }
  if (conn.tracing())
    conn.trace(std::string("send call ") + member_name<MP>() + " (" + std::to_string(buf.size()) +
               " bytes)");
  conn.call(buf, state_ptr<state_base>(st), &decode_reply<R>, deadline, member_name<MP>(), false,
            b->retries, b->timeout);
  return result;
}

// ---- callbacks (declared in callback.hpp) -----------------------------------------------------

// Runs `fn` with decoded arguments; replies (two-way) or reports its exception (one-way).
template <class R, class... A, class Args, std::size_t... I>
void invoke_local(const std::function<R(A...)>& fn, Args& args, const reply_sink* reply,
                  const codec_context& ctx, std::index_sequence<I...>) {
  if (reply == nullptr) {
    try {
      fn(pass_arg<A>(std::get<I>(args))...);
    } catch (...) {
      ctx.report_one_way_error(std::current_exception());
    }
    return;
  }
  try {
    if constexpr (std::is_void_v<R>) {
      fn(pass_arg<A>(std::get<I>(args))...);
      reply->value();
    } else {
      reply->value(fn(pass_arg<A>(std::get<I>(args))...));
    }
  } catch (...) {
    try {
      reply->current_exception();
    } catch (...) {
      // Not even an error reply could be sent: the peer is gone (or the proxy was destroyed
      // from inside this callback) and nothing waits for it.
    }
  }
}

template <class R, class... A>
void run_local(const std::shared_ptr<const void>& fn, decoder& d, const reply_sink* reply) {
  using fn_t = std::function<R(A...)>;
  using args_t = std::tuple<wire_t<A>...>;
  constexpr auto seq = std::index_sequence_for<A...>{};
  // Decoded here, on the thread that read the frame, in frame order (a release after it cannot
  // overtake a function among the arguments).
  args_t args;
  std::apply([&](auto&... a) { (d(a), ...); }, args);
  if (!d.reader().at_end()) throw protocol_error("procxy: trailing bytes after callback arguments");
  codec_context& ctx = *d.context();
  if (!ctx.has_executor()) {
    invoke_local(*static_cast<const fn_t*>(fn.get()), args, reply, ctx, seq);
    return;
  }
  auto boxed = std::make_shared<args_t>(std::move(args));
  std::optional<reply_sink> r;
  if (reply != nullptr) r = *reply;
  ctx.post_task(
      [fn, boxed, r, &ctx, seq](bool closed) {
        if (closed) return;  // the proxy is going away; the child sees the channel close
        invoke_local(*static_cast<const fn_t*>(fn.get()), *boxed, r ? &*r : nullptr, ctx, seq);
      },
      /*ordered=*/reply == nullptr);
}

template <class R, class... A>
R call_remote(const remote_callback& ref, bool one_way, const A&... a) {
  auto conn = lock_callback_connection(ref);  // throws the reason if the other side is gone
  auto& ctx = conn->callbacks();
  byte_buffer& buf = scratch_buffer();
  {
    registration_scope scope(&ctx);  // functions among the arguments (higher-order callbacks)
    encode_request(buf, one_way ? message_kind::notify : message_kind::invoke, ref.id, &ctx, a...);
    conn->check_size(buf, "callback");
    scope.commit();
  }
  ctx.invocations_out.fetch_add(1, std::memory_order_relaxed);
  if (conn->tracing())
    conn->trace(std::string("send ") + (one_way ? "notify" : "invoke") + " of callback #" +
                std::to_string(ref.id));
  if constexpr (std::is_void_v<R>) {
    if (one_way) {
      conn->send_one_way(buf);
      return;
    }
  }
  state_ptr<state<R>> st(new state<R>());
  auto result = make_future(st);
  auto t = ctx.invoke_timeout();
  conn->call(buf, state_ptr<state_base>(st), &decode_reply<R>,
             t.count() > 0 ? clock::now() + t : no_deadline, "callback", false, 0, t);
  return result.get();
}

}  // namespace procxy::detail
