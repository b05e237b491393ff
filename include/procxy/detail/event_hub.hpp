// procxy/detail/event_hub.hpp — the parent's side of events and properties: one channel per
// event (its listeners, subscribe/unsubscribe messages) and the last property values the child
// sent. Type-erased; the typed faces are in procxy/event.hpp. See docs/design.md "Events".
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "procxy/detail/connection.hpp"

namespace procxy::detail {

class event_channel;

// One listener. `fn` receives a pointer to the decoded argument tuple of its event.
struct listener_cell {
  std::function<void(const void* args)> fn;
  bool once = false;
  std::recursive_mutex run_mu;  // held while fn runs: removal from another thread waits for it
  bool active = true;           // under run_mu
  int depth = 0;                // under run_mu: fn is running on the thread holding run_mu
  std::weak_ptr<event_channel> channel;
};

class event_channel : public std::enable_shared_from_this<event_channel> {
 public:
  // Decodes one emission from `d` (typed: deliver_event<A...> in procxy/event.hpp) and delivers
  // it — runs the listeners, or hands them to the executor and returns true — or, `drop`,
  // destroys it (backpressure; callbacks among the arguments are released).
  using deliver_fn = bool (*)(event_channel& ch, decoder& d, connection& c, bool drop);

  event_channel(std::uint64_t id, const char* name, std::weak_ptr<connection> conn, deliver_fn fn)
      : id_(id), name_(name), conn_(std::move(conn)), deliver_(fn) {}

  // Adds a listener; the first one subscribes (a message to the child). Thread-safe.
  std::shared_ptr<listener_cell> add(std::function<void(const void*)> fn, bool once);
  // Removes it: after return it never runs again (if it is running on another thread, waits
  // for it; from inside itself, returns at once). The last one unsubscribes. Idempotent.
  void remove(listener_cell& c);
  std::size_t listeners() const;

  // On the dispatch thread, for an event frame of `c` positioned after the event id.
  bool deliver(decoder& d, connection& c) { return deliver_(*this, d, c, false); }
  void discard(decoder& d, connection& c) { deliver_(*this, d, c, true); }
  // Runs the listeners, in the order they were added, with the decoded arguments `args`.
  // `on_e`: called by the dispatch thread (listeners inline), which keeps its own copy of the
  // listener list and takes the lock only when the list changed.
  void run(const void* args, connection& c, bool on_e = false);
  // Hands the decoded arguments to the user's executor; the task runs the listeners.
  void post(std::shared_ptr<void> args, connection& c);
  // The proxy is gone: no listener runs again.
  void clear();
  const char* name() const noexcept { return name_; }

 private:
  using cell_list = std::vector<std::shared_ptr<listener_cell>>;
  void send_subscribe(bool on);  // mu_ held: on/off messages stay in order

  const std::uint64_t id_;
  const char* name_;
  std::weak_ptr<connection> conn_;
  deliver_fn deliver_;
  mutable std::mutex mu_;
  // In the order they were added. Copy-on-write: add/remove replace the list, so run() takes a
  // snapshot under the lock with one reference count, not a copy per event.
  std::shared_ptr<const cell_list> cells_ = std::make_shared<const cell_list>();
  bool cleared_ = false;
  std::atomic<std::uint64_t> version_{0};     // bumped under mu_ whenever cells_ or cleared_ change
  std::shared_ptr<const cell_list> e_cells_;  // the dispatch thread's copy (run with on_e)
  std::uint64_t e_version_ = ~std::uint64_t{0};
};

class event_hub {
 public:
  // The channel of event `id`, created on first use. Never removed until clear().
  std::shared_ptr<event_channel> channel(std::uint64_t id, const char* name,
                                         event_channel::deliver_fn fn, std::weak_ptr<connection> c);
  std::shared_ptr<event_channel> find(std::uint64_t id) const;
  // Stores the values of a `properties` frame.
  void set_properties(std::span<const property_value> values);
  // The encoded value of property `id` as last sent, or null if none arrived yet.
  std::shared_ptr<const std::vector<std::byte>> property(std::uint64_t id) const;
  // The proxy is gone: no listener runs again.
  void clear();
  // Listener counts by event name, into `out`.
  void count_listeners(std::map<std::string, std::size_t>& out) const;

 private:
  mutable std::mutex mu_;
  std::unordered_map<std::uint64_t, std::shared_ptr<event_channel>> channels_;
  std::unordered_map<std::uint64_t, std::shared_ptr<const std::vector<std::byte>>> props_;
};

// ---- the child's side --------------------------------------------------------------------------

// Where one event member of the served object sends. Owned by the child's server.
struct event_link {
  std::uint64_t id = 0;
  const char* name = "";
  std::atomic<bool> listened{false};  // the parent has at least one listener
  connection* conn = nullptr;
  // The class has properties: an emit on the object thread is preceded by the snapshot
  // (connection::before_reply, which asks the child's endpoint).
  bool snapshot = false;
};
// Sends a built event frame (after the property snapshot, on the object thread).
void send_event(event_link& l, byte_buffer& frame);

// The child's events and properties of class C, registered by PROCXY_CLASS.
struct member_tables {
  struct event_entry {
    std::uint64_t id;
    const char* name;
    event_link*& (*link)(void* obj);  // the member's link pointer
  };
  struct property_entry {
    std::uint64_t id;
    const char* name;
    void (*encode)(const void* obj, encoder& e);
  };
  std::vector<event_entry> events;
  std::vector<property_entry> properties;
};
template <class C>
member_tables& members_of() {
  static member_tables& t = *new member_tables;  // never destroyed (see methods_of)
  return t;
}

}  // namespace procxy::detail
