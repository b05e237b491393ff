// procxy/event.hpp — events a child object emits and the parent listens to, properties the
// parent reads without a round trip, and the child's request to be disposed of.
//
//   class Job {
//    public:
//     procxy::event<int, int> progress;              // emitted in the child: progress.emit(i, n)
//     int processed = 0;                             // a property
//     void run(int n);
//   };
//   PROCXY_CLASS(Job, run, progress, processed);     // events and properties listed like methods
//
//   auto job = procxy::spawn<Job>();
//   procxy::subscription s = job.progress().on([](int done, int total) { ... });
//   job.run(100).get();                              // every event of run() was delivered first
//   int n = job.processed();                         // no IPC: the value as of the last call/event
//
// docs/design.md "Events" has the threads, order, backpressure and lifetime rules.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>

#include "procxy/detail/event_hub.hpp"
#include "procxy/detail/method.hpp"
#include "procxy/proxy.hpp"

namespace procxy {

// A member of a class served in a child process. emit() sends the arguments to the parent's
// listeners — only while the parent has at least one (otherwise it costs one atomic load).
// Thread-safe. Outside a child (or not listed in PROCXY_CLASS) emit() does nothing.
template <class... A>
class event {
  static_assert((!std::is_reference_v<A> && ...),
                "procxy: event arguments are values: write event<std::string>, not "
                "event<const std::string&>");
  static_assert((detail::check_param<A>() && ...));

 public:
  event() = default;
  event(const event&) noexcept {}  // a copy is a new, unattached event
  event& operator=(const event&) noexcept { return *this; }

  void emit(const A&... a) const {
    detail::event_link* l = procxy_link_;
    if (l == nullptr || !l->listened.load(std::memory_order_acquire)) return;
    auto& ctx = l->conn->callbacks();
    detail::byte_buffer& buf = detail::scratch_buffer();
    {
      detail::registration_scope scope(&ctx);  // functions among the arguments: lent if sent
      detail::encode_request(buf, detail::message_kind::event, l->id, &ctx, a...);
      l->conn->check_size(buf, l->name);
      scope.commit();
    }
    detail::send_event(*l, buf);
  }
  // Whether the parent listens now (to skip building expensive arguments).
  bool listened() const noexcept {
    return procxy_link_ != nullptr && procxy_link_->listened.load(std::memory_order_acquire);
  }

  detail::event_link* procxy_link_ = nullptr;  // set by the child's server
};

// Identifies a listener added with once() (which may be dropped: it removes itself after running).
class listener_id {
 public:
  listener_id() = default;
  explicit listener_id(std::weak_ptr<detail::listener_cell> c) : cell_(std::move(c)) {}
  // Removes the listener (if still there). After return it never runs again.
  void off() {
    if (auto c = cell_.lock())
      if (auto ch = c->channel.lock()) ch->remove(*c);
    cell_.reset();
  }

 private:
  std::weak_ptr<detail::listener_cell> cell_;
};

// Owns a listener added with on(): destroying it (or off()) removes the listener; after that it
// never runs again. It may be destroyed from inside its own listener. Move-only.
class [[nodiscard]] subscription {
 public:
  subscription() = default;
  explicit subscription(std::weak_ptr<detail::listener_cell> c) : id_(std::move(c)) {}
  subscription(subscription&& o) noexcept = default;
  subscription& operator=(subscription&& o) noexcept {
    if (this != &o) {
      off();
      id_ = std::move(o.id_);
    }
    return *this;
  }
  ~subscription() { off(); }
  void off() { id_.off(); }
  // Gives up ownership: the listener stays until the proxy goes (or the id's off()).
  listener_id release() noexcept { return std::exchange(id_, listener_id{}); }

 private:
  listener_id id_;
};

// An event of a child's object, seen from the parent: proxy.progress().
template <class... A>
class event_source {
 public:
  explicit event_source(std::shared_ptr<detail::event_channel> ch) : ch_(std::move(ch)) {}

  // Adds a listener, called with the arguments of every emission (on the proxy's dispatch thread
  // or its callback_executor, in emission order) until the subscription is destroyed.
  template <class F>
  subscription on(F f) {
    return subscription(add(std::move(f), false));
  }
  // Adds a listener that runs for the next emission only.
  template <class F>
  listener_id once(F f) {
    return listener_id(add(std::move(f), true));
  }
  void off(listener_id& id) { id.off(); }
  void off(subscription& s) { s.off(); }
  // How many listeners this event has now.
  std::size_t listeners() const { return ch_->listeners(); }

 private:
  using args_t = std::tuple<detail::wire_t<A>...>;
  template <class F>
  std::weak_ptr<detail::listener_cell> add(F f, bool once) {
    static_assert(std::is_invocable_v<F&, const detail::wire_t<A>&...>,
                  "procxy: the listener cannot be called with this event's arguments");
    auto cell = ch_->add(
        [f = std::move(f)](const void* p) mutable {
          std::apply([&](const auto&... x) { f(x...); }, *static_cast<const args_t*>(p));
        },
        once);
    return cell;
  }
  std::shared_ptr<detail::event_channel> ch_;
};

// The child's view of itself: procxy::this_child().dispose() asks the parent to end this child
// (it stops accepting calls, runs the object's destructor, reaps the child and runs on_exit
// with exit_info::disposed set). Any thread. While the object thread runs a call, the request
// goes out right after that call's reply (the call completes normally); otherwise at once.
class child_handle {
 public:
  void dispose();
  bool in_child() const noexcept;
};
child_handle& this_child() noexcept;

namespace detail {

void set_child_connection(connection* c) noexcept;

template <auto MP>
struct member_object;
template <class C, class T, T C::*MP>
struct member_object<MP> {
  using cls = C;
  using type = T;
};

// event_channel::deliver_fn of event<A...>: the arguments are decoded on the stack and only
// boxed when they have to wait for the user's executor.
template <class... A>
bool deliver_event(event_channel& ch, decoder& d, connection& c, bool drop) {
  using args_t = std::tuple<wire_t<A>...>;
  args_t args;
  std::apply([&](auto&... x) { (d(x), ...); }, args);
  expect_end(d);
  if (drop) return false;
  if (!c.callbacks().has_executor()) {
    c.events_received.fetch_add(1, std::memory_order_relaxed);
    ch.run(&args, c, /*on_e=*/true);  // no executor: the dispatch thread runs the listeners
    return false;
  }
  ch.post(std::make_shared<args_t>(std::move(args)), c);
  return true;
}

template <class T>
struct is_event : std::false_type {};
template <class... A>
struct is_event<event<A...>> : std::true_type {};

// A described event member, on proxy<T>: proxy.progress() gives its event_source.
template <auto MP, class E = typename member_object<MP>::type>
struct event_face;
template <auto MP, class... A>
struct event_face<MP, event<A...>> {
  event_source<A...> operator()() const {
    call_target* core = binding_ ? binding_->core : nullptr;
    if (core == nullptr) throw terminated("procxy: events of a moved-from proxy");
    return event_source<A...>(core->events().channel(tag_id<method_tag<MP>>(), member_name<MP>(),
                                                     &deliver_event<A...>,
                                                     core->event_channel().weak_from_this()));
  }
  const binding* binding_ = nullptr;
};

// A described data member, on proxy<T>: proxy.processed() reads the child's value as of the
// last completed call or event, without IPC. Read-only.
template <auto MP, class T = typename member_object<MP>::type>
struct property_face {
  using value_t = std::remove_cv_t<T>;
  using result_t = std::conditional_t<std::is_class_v<value_t>, const value_t, value_t>;

  result_t operator()() const {
    call_target* core = binding_ ? binding_->core : nullptr;
    if (core == nullptr) throw terminated("procxy: properties of a moved-from proxy");
    const auto id = tag_id<method_tag<MP>>();
    auto bytes = core->events().property(id);
    if (!bytes) {             // not constructed yet: the values come with the construct reply
      core->started().get();  // spawn_error if it never will be
      bytes = core->events().property(id);
      if (!bytes) return value_t{};
    }
    byte_reader r(std::span<const std::byte>(bytes->data(), bytes->size()));
    decoder d(r);
    return d.template get<value_t>();
  }
  // Read-only in the parent (it mirrors the child's member): no assignment at all, so
  // std::is_assignable and concepts see it as such. Change it through a method of the class.
  property_face() = default;
  property_face(const property_face&) = default;
  property_face& operator=(const property_face&) = delete;
  const binding* binding_ = nullptr;
};

template <auto MP>
using data_face = std::conditional_t<is_event<typename member_object<MP>::type>::value,
                                     event_face<MP>, property_face<MP>>;

// What PROCXY_CLASS declares for `entry`: a method, an event or a property.
template <auto MP>
struct member_face {
  using type = method_fn<MP>;
};
template <auto MP>
requires std::is_member_object_pointer_v<decltype(MP)>
struct member_face<MP> {
  using type = data_face<MP>;
};
template <auto MP>
using member_face_t = typename member_face<MP>::type;

template <auto MP, class E>
void describe_fn(described_members& out, event_face<MP, E>*) {
  out.emplace_back(tag_id<method_tag<MP>>(), member_label<MP>());
}
template <auto MP, class T>
void describe_fn(described_members& out, property_face<MP, T>*) {
  out.emplace_back(tag_id<method_tag<MP>>(), member_label<MP>());
}

// Registration for the child (instantiated by PROCXY_CLASS).
template <auto MP, class E>
void register_fn(event_face<MP, E>*) {
  using C = typename member_object<MP>::cls;
  static const bool once = [] {
    members_of<C>().events.push_back(member_tables::event_entry{
        tag_id<method_tag<MP>>(), member_name<MP>(),
        [](void* obj) -> event_link*& { return (static_cast<C*>(obj)->*MP).procxy_link_; }});
    return true;
  }();
  (void)once;
}
template <auto MP, class T>
void register_fn(property_face<MP, T>*) {
  using C = typename member_object<MP>::cls;
  using V = std::remove_cv_t<T>;
  static_assert(!std::is_reference_v<T>, "procxy: a reference member cannot be a property");
  static_assert(check_param<V>());
  static const bool once = [] {
    members_of<C>().properties.push_back(member_tables::property_entry{
        tag_id<method_tag<MP>>(), member_name<MP>(),
        [](const void* obj, encoder& e) { e(static_cast<const C*>(obj)->*MP); }});
    return true;
  }();
  (void)once;
}

}  // namespace detail
}  // namespace procxy
