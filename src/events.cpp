// Events and properties: the parent's channels and property store, the child's event sends.
#include <algorithm>
#include <stdexcept>
#include <string>
#include <utility>

#include "procxy/detail/callback.hpp"
#include "procxy/detail/event_hub.hpp"
#include "procxy/detail/method.hpp"
#include "procxy/event.hpp"

namespace procxy::detail {

// ---- parent: channels --------------------------------------------------------------------------

std::shared_ptr<listener_cell> event_channel::add(std::function<void(const void*)> fn, bool once) {
  auto cell = std::make_shared<listener_cell>();
  cell->fn = std::move(fn);
  cell->once = once;
  cell->channel = weak_from_this();
  std::lock_guard lk(mu_);
  if (cleared_) {
    cell->active = false;  // the proxy is gone: it would never run
    return cell;
  }
  auto next = std::make_shared<cell_list>(*cells_);
  next->push_back(cell);
  cells_ = std::move(next);
  version_.fetch_add(1, std::memory_order_release);
  if (cells_->size() == 1) send_subscribe(true);
  return cell;
}

namespace {
// Stops a listener for good; returns its function to be destroyed by the caller outside every
// lock. Waits while it runs on another thread (run_mu is recursive: not on this one). When it is
// not running, what it captured goes now, even while a copy of a list (the dispatch thread's)
// still points at the cell.
std::function<void(const void*)> deactivate(listener_cell& c) {
  std::lock_guard rl(c.run_mu);
  c.active = false;
  if (c.depth == 0) return std::move(c.fn);
  return {};
}
}  // namespace

void event_channel::remove(listener_cell& c) {
  auto dead = deactivate(c);  // destroyed last, outside every lock
  std::shared_ptr<const cell_list>
      old;  // destroyed after the lock (its functions may hold callbacks)
  std::lock_guard lk(mu_);
  auto it =
      std::find_if(cells_->begin(), cells_->end(), [&](const auto& p) { return p.get() == &c; });
  if (it == cells_->end()) return;
  auto next = std::make_shared<cell_list>();
  next->reserve(cells_->size() - 1);
  for (const auto& p : *cells_)
    if (p.get() != &c) next->push_back(p);
  old = std::exchange(cells_, std::move(next));
  version_.fetch_add(1, std::memory_order_release);
  if (cells_->empty() && !cleared_) send_subscribe(false);
}

std::size_t event_channel::listeners() const {
  std::lock_guard lk(mu_);
  return cells_->size();
}

void event_channel::send_subscribe(bool on) {
  auto c = conn_.lock();
  if (!c || c->broken()) return;
  try {
    byte_buffer buf;
    encode_subscribe(buf, {id_, on});
    if (c->tracing()) c->trace(std::string("send ") + (on ? "subscribe " : "unsubscribe ") + name_);
    c->send(buf.view());
    c->event_subscriptions_sent.fetch_add(1, std::memory_order_relaxed);
  } catch (...) {
    // The child is gone; nothing to subscribe to.
  }
}

void event_channel::post(std::shared_ptr<void> args, connection& c) {
  connection* conn = &c;  // kept alive by the task (post_task)
  c.callbacks().post_task(
      [self = shared_from_this(), args = std::move(args), conn](bool closed) {
        if (closed) return;  // dropped by backpressure, or the proxy is gone: not delivered
        conn->events_received.fetch_add(1, std::memory_order_relaxed);
        self->run(args.get(), *conn);
        conn->event_done();
      },
      /*ordered=*/true, /*event=*/true);
}

void event_channel::run(const void* args, connection& c, bool on_e) {
  std::shared_ptr<const cell_list> cells;  // held while iterating: a listener may change the list
  if (on_e && version_.load(std::memory_order_acquire) == e_version_) {
    cells = e_cells_;
  } else {
    std::lock_guard lk(mu_);
    cells = cleared_ ? nullptr : cells_;
    if (on_e) {
      e_cells_ = cells;
      e_version_ = version_.load(std::memory_order_relaxed);
    }
  }
  if (!cells) return;  // cleared: the proxy is gone
  for (const auto& cell : *cells) {
    std::unique_lock rl(cell->run_mu);
    if (!cell->active) continue;
    if (cell->once) cell->active = false;
    ++cell->depth;
    try {
      cell->fn(args);
    } catch (...) {
      c.callbacks().report_one_way_error(std::current_exception());
    }
    --cell->depth;
    rl.unlock();
    if (cell->once) remove(*cell);
  }
  // The list changed while it ran: let go of the old one now (its removed cells with it).
  if (on_e && version_.load(std::memory_order_acquire) != e_version_) e_cells_.reset();
}

void event_channel::clear() {
  std::shared_ptr<const cell_list> cells;
  {
    std::lock_guard lk(mu_);
    cleared_ = true;
    cells = std::exchange(cells_, std::make_shared<const cell_list>());
    version_.fetch_add(1, std::memory_order_release);
  }
  for (const auto& cell : *cells) deactivate(*cell);  // each function destroyed as it returns
}

std::shared_ptr<event_channel> event_hub::channel(std::uint64_t id, const char* name,
                                                  event_channel::deliver_fn fn,
                                                  std::weak_ptr<connection> c) {
  std::lock_guard lk(mu_);
  auto& ch = channels_[id];
  if (!ch) ch = std::make_shared<event_channel>(id, name, std::move(c), fn);
  return ch;
}

std::shared_ptr<event_channel> event_hub::find(std::uint64_t id) const {
  std::lock_guard lk(mu_);
  auto it = channels_.find(id);
  return it == channels_.end() ? nullptr : it->second;
}

void event_hub::set_properties(std::span<const property_value> values) {
  std::vector<std::shared_ptr<const std::vector<std::byte>>> copies;
  copies.reserve(values.size());
  for (const auto& v : values)
    copies.push_back(
        std::make_shared<const std::vector<std::byte>>(v.bytes.begin(), v.bytes.end()));
  std::lock_guard lk(mu_);
  for (std::size_t i = 0; i < values.size(); ++i) props_[values[i].id] = std::move(copies[i]);
}

std::shared_ptr<const std::vector<std::byte>> event_hub::property(std::uint64_t id) const {
  std::lock_guard lk(mu_);
  auto it = props_.find(id);
  return it == props_.end() ? nullptr : it->second;
}

void event_hub::count_listeners(std::map<std::string, std::size_t>& out) const {
  std::lock_guard lk(mu_);
  for (const auto& [id, ch] : channels_) out[ch->name()] = ch->listeners();
}

void event_hub::clear() {
  std::unordered_map<std::uint64_t, std::shared_ptr<event_channel>> channels;
  {
    std::lock_guard lk(mu_);
    channels = channels_;  // kept: late event frames still decode (and drop) through them
  }
  for (auto& [id, ch] : channels) ch->clear();
}

// ---- child -------------------------------------------------------------------------------------

void send_event(event_link& l, byte_buffer& frame) {
  if (l.snapshot && l.conn->on_dispatch_thread()) {
    // The snapshot builds its own frame in the scratch buffer: keep the event's in a buffer of
    // this thread's own (reused, no allocation per event).
    thread_local byte_buffer copy;
    copy.clear();
    copy.append(frame.data(), frame.size());
    copy.descriptors() = std::move(frame.descriptors());
    l.conn->before_reply();
    if (l.conn->tracing()) l.conn->trace(std::string("send event ") + l.name);
    l.conn->send_one_way(copy);
    return;
  }
  if (l.conn->tracing()) l.conn->trace(std::string("send event ") + l.name);
  l.conn->send_one_way(frame);
}

namespace {
std::atomic<connection*> g_child_conn{nullptr};
}  // namespace

void set_child_connection(connection* c) noexcept {
  g_child_conn.store(c, std::memory_order_release);
}

}  // namespace procxy::detail

namespace procxy {

void child_handle::dispose() {
  auto* c = detail::g_child_conn.load(std::memory_order_acquire);
  if (c == nullptr)
    throw std::logic_error("procxy: this_child().dispose() outside a procxy child process");
  // While the object thread runs a call (this thread or another): sent right after that call's
  // reply, which completes normally. While the object thread is idle: sent at once.
  c->after_current_item([c] {
    detail::byte_buffer buf;
    detail::encode_empty(buf, detail::message_kind::dispose);
    if (c->tracing()) c->trace("send dispose");
    try {
      c->send(buf.view());
    } catch (...) {
      // The parent is gone already.
    }
  });
}

bool child_handle::in_child() const noexcept {
  return detail::g_child_conn.load(std::memory_order_acquire) != nullptr;
}

child_handle& this_child() noexcept {
  static child_handle h;
  return h;
}

}  // namespace procxy
