// The parent's side of a child: proxy_core ties the process (src/process.hpp: starting, reaping,
// stderr) to its connection, its endpoint (parent_handler) and its dispatch thread.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <system_error>
#include <utility>

#include "crash.hpp"
#include "process.hpp"
#include "procxy/detail/core.hpp"
#include "procxy/detail/method.hpp"
#include "procxy/detail/shm_transport.hpp"

namespace procxy::detail {

namespace {

void decode_construct_reply(state_base& st, message_kind kind, decoder& d,
                            const reply_context& ctx) {
  const char* what = ctx.what;
  if (kind == message_kind::reply_value) {
    decode_reply_value<void>(d);
    static_cast<state<void>&>(st).set_value();
    return;
  }
  auto cause = decode_reply_error(d, what, ctx.peer_pid);
  try {
    try {
      std::rethrow_exception(cause);
    } catch (const spawn_error&) {
      // The child refused before any constructor ran (no such constructor, or a description
      // that does not match): its message says why, at top level.
      st.fail(cause);
      return;
    } catch (...) {
      std::throw_with_nested(
          spawn_error(std::string("procxy: the constructor of ") + what + " threw in the child"));
    }
  } catch (...) {
    st.fail(std::current_exception());
  }
}

}  // namespace

// Requests the child sends the parent: events, property updates, dispose.
// The parent's endpoint: requests the child sends (events, property updates, dispose) and the
// failure policy (docs/design.md "Threads": the I/O thread runs it, never a user's thread).
class parent_handler final : public endpoint {
 public:
  parent_handler(std::weak_ptr<proxy_core> core, bool kill_on_timeout,
                 std::function<void()> on_exit)
      : core_(std::move(core)), kill_on_timeout_(kill_on_timeout), on_exit_(std::move(on_exit)) {}

  std::exception_ptr disconnected(std::exception_ptr cause) override {
    auto c = core_.lock();
    if (!c) return std::make_exception_ptr(terminated("procxy: the proxy was destroyed"));
    return c->on_disconnect(cause);
  }
  void call_timed_out(const char* what) override {
    if (!kill_on_timeout_) return;
    if (auto c = core_.lock()) c->kill_after_timeout(what);
  }
  void dispatch_exit() override {
    if (on_exit_) on_exit_();
  }

  void handle(frame&& f, connection& c) override {
    if (f.header.kind == message_kind::event) {
      bool posted = false;
      try {
        posted = deliver(f, c, false, &last_);
      } catch (...) {
        c.event_done();
        throw;
      }
      if (!posted) c.event_done();
      return;
    }
    auto core = core_.lock();
    switch (f.header.kind) {
      case message_kind::properties: {
        auto values = decode_properties(f.body.view());
        if (core) core->events().set_properties(values);
        c.property_updates.fetch_add(1, std::memory_order_relaxed);
        if (c.tracing()) c.trace("recv properties");
        return;
      }
      case message_kind::dispose:
        if (c.tracing()) c.trace("recv dispose");
        decode_empty(f.header.kind, f.body.view());
        if (core) core->on_dispose();
        return;
      default:
        throw protocol_error(std::string("procxy: unexpected ") + to_string(f.header.kind) +
                             " message");
    }
  }

  void discard(frame& f, connection& c) override { deliver(f, c, true, nullptr); }

 private:
  // The channel of the last event handle() delivered (E only; channels live as long as the hub):
  // a stream of one event finds its channel without the hub's lock.
  struct last_channel {
    std::uint64_t id = 0;
    std::shared_ptr<event_channel> ch;
  };
  // Decodes an event frame and runs (or posts, or with `drop` destroys) it. A stream of one
  // event finds its channel in `last` (E only), without the proxy core or the hub's lock; a
  // channel outlives its proxy only cleared, so nothing runs once the proxy is gone.
  bool deliver(frame& f, connection& c, bool drop, last_channel* last) {
    byte_reader r(f.body.view());
    decoder d(r, &c.callbacks(), &f.fds);
    auto id = decode_target(d);
    std::shared_ptr<event_channel> found;
    event_channel* ch = nullptr;
    if (last && last->ch && last->id == id) {
      ch = last->ch.get();
    } else {
      auto core = core_.lock();
      if (!core) return false;  // the proxy is gone
      found = core->events().find(id);
      ch = found.get();
      if (last && found) *last = {id, found};
    }
    if (!ch)
      throw protocol_error("procxy: the child sent event #" + std::to_string(id) +
                           ", which the parent never listened to");
    if (c.tracing()) c.trace(std::string(drop ? "drop event " : "recv event ") + ch->name());
    if (drop) {
      ch->discard(d, c);
      return false;
    }
    return ch->deliver(d, c);
  }
  std::weak_ptr<proxy_core> core_;
  last_channel last_;
  const bool kill_on_timeout_;
  std::function<void()> on_exit_;
};

namespace {

// transport_kind::automatic is shared memory, unless PROCXY_TRANSPORT says otherwise.
transport_kind resolve(transport_kind k) {
  if (k != transport_kind::automatic) return k;
  const char* v = std::getenv("PROCXY_TRANSPORT");
  if (v == nullptr || *v == '\0') return transport_kind::shared_memory;
  if (std::strcmp(v, "socket") == 0) return transport_kind::socket;
  if (std::strcmp(v, "shared_memory") == 0) return transport_kind::shared_memory;
  throw spawn_error(std::string("procxy: PROCXY_TRANSPORT is '") + v +
                    "'; it must be 'socket' or 'shared_memory' (or unset)");
}

}  // namespace

std::shared_ptr<proxy_core> proxy_core::start(const spawn_options& opts, byte_buffer& construct,
                                              const char* class_name, const char* constructor) {
  // A process started as a child whose main() did not call procxy::init (init takes these
  // variables away) would spawn its own child, which would do the same, without end: refuse.
  if (std::getenv("PROCXY_CHANNEL_FD") != nullptr)
    throw spawn_error(
        std::string("procxy: this process was started by procxy as a child to serve ") +
        class_name +
        ", but its main() spawns instead of calling procxy::init(argc, argv) first; "
        "call procxy::init at the start of main, before any spawn");
  if (opts.max_descriptors_per_message > max_descriptors_limit)
    throw spawn_error("procxy: max_descriptors_per_message is " +
                      std::to_string(opts.max_descriptors_per_message) + "; at most " +
                      std::to_string(max_descriptors_limit) +
                      " descriptors can travel with one message (SCM_MAX_FD)");
  if (construct.descriptors().size() > opts.max_descriptors_per_message)
    throw serialization_error("procxy: the constructor's arguments carry " +
                              std::to_string(construct.descriptors().size()) +
                              " descriptors, more than max_descriptors_per_message (" +
                              std::to_string(opts.max_descriptors_per_message) + ")");
  std::shared_ptr<proxy_core> core(new proxy_core());
  core->opts_ = opts;
  core->class_name_ = class_name;
  // The transport (docs/design.md "Shared-memory transport"): automatic falls back to the socket
  // where no sealed memfd can be made; asked for explicitly, shared memory fails the spawn.
  const transport_kind kind = resolve(opts.transport);
  fd_guard shm_fd;
  std::size_t ring = 0;
  if (kind == transport_kind::shared_memory) {
    ring = shm::ring_size(opts.shared_memory_ring);
    try {
      shm_fd.fd = shm::create(ring);
    } catch (const std::system_error& e) {
      if (opts.transport == transport_kind::shared_memory)
        throw spawn_error(std::string("procxy: the shared-memory transport cannot be set up: ") +
                          e.what());
    }
  }
  auto launched = launch_child(opts, shm_fd.fd, ring);
  int channel_fd = launched.channel_fd;
  core->child_ = std::move(launched.process);
  core->stderr_ = std::move(launched.err);
  core->crash_fd_ = launched.crash_fd;
  core->sandbox_ = std::move(launched.sandbox);
  std::weak_ptr<proxy_core> weak = core;
  std::function<void()> on_exit;
  if (opts.on_exit) {
    // Captures what it needs by value: the core may be gone when the dispatch thread ends.
    on_exit = [child = core->child_, requested = core->exit_requested_, handler = opts.on_exit] {
      child->wait_exit(-1);  // reaped already on every path that stops the dispatch thread
      exit_info info;
      info.pid = child->pid();
      info.description = child->describe(info.exit_code, info.signal);
      const int who = requested->load(std::memory_order_acquire);
      info.requested = who == by_proxy || who == disposed;
      info.disposed = who == disposed;
      try {
        handler(info);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "procxy: the on_exit handler threw: %s\n", e.what());
      } catch (...) {
        std::fprintf(stderr, "procxy: the on_exit handler threw\n");
      }
    };
  }
  // Before the connection exists: its I/O thread may see the child gone (one whose sandbox could
  // not be set up dies at once) and run on_disconnect, which reads started_, before start()
  // returns.
  core->started_ = state_ptr<state<void>>(new state<void>());
  core->handler_ = std::make_shared<parent_handler>(
      weak, opts.on_timeout == timeout_policy::kill_child, std::move(on_exit));
  connection::options co;
  co.s = connection::side::parent;
  co.max_message_size = opts.max_message_size;
  co.max_descriptors = opts.max_descriptors_per_message;
  co.max_events = opts.max_queued_events;
  co.drop_oldest = opts.on_event_overflow == event_overflow::drop_oldest;
  co.peer_pid = core->child_->pid();
  co.max_callbacks = opts.max_callbacks;
  co.callback_timeout = callback_timeout(opts);
  co.on_callback_error = opts.on_callback_error;
  co.callback_executor = opts.callback_executor;
  core->conn_ = connection::create(
      shm_fd.fd >= 0 ? make_shm_transport(channel_fd, shm_fd.release(), ring, 0, shm::may_spin())
                     : make_socket_transport(channel_fd),
      core->handler_, co);
  // The thread keeps the handler alive: after terminate() from inside a callback it is detached
  // and may outlive the core by the rest of that callback.
  core->dispatch_ =
      std::thread([conn = core->conn_, h = core->handler_] { conn->run_dispatch_loop(); });

  core->conn_->call(construct, state_ptr<state_base>(core->started_), &decode_construct_reply,
                    core->deadline_for(opts.start_timeout), constructor, /*fatal_timeout=*/true);
  return core;
}

proxy_core::~proxy_core() {
  terminate();
  if (crash_fd_ >= 0) ::close(crash_fd_);
}

int proxy_core::pid() const noexcept { return child_ ? child_->pid() : -1; }

bool proxy_core::running() const { return child_ && child_->alive(); }

future<void> proxy_core::started() { return make_future(started_); }

channel_stats proxy_core::stats() const {
  auto s = conn_->stats();
  events_.count_listeners(s.event_listeners);
  return s;
}

std::exception_ptr proxy_core::on_disconnect(std::exception_ptr cause) {
  if (cause) {  // protocol error or start timeout: the child cannot be trusted any more
    mark_exit(true);
    child_->kill(SIGKILL);
    child_->wait_exit(-1);
    return cause;
  }
  // Never take terminate_mu_ here: terminate() holds it while it joins this very thread.
  if (terminating_.load(std::memory_order_acquire))
    return std::make_exception_ptr(terminated("procxy: the proxy was terminated"));
  mark_exit(false);
  // A child whose constructor threw exits by itself; its error is the constructor's.
  bool start_failed = started_->is_ready() && started_->error();
  if (!child_->wait_exit(5000)) {
    child_->kill(SIGKILL);
    child_->wait_exit(-1);
    if (start_failed) return started_->error();
    return std::make_exception_ptr(
        protocol_error("procxy: the child closed its channel but kept running; it was killed"));
  }
  int code = -1, sig = 0;
  std::string how = child_->describe(code, sig);
  if (start_failed) return started_->error();
  std::string who = std::string("procxy: child ") + std::to_string(child_->pid()) + " (" +
                    class_name_ + ") " + how;
  // The crash context (docs/design.md "Crash reports"): the calls it died with (still in the
  // table: they fail after this returns) and, from its crash handler, its stack.
  std::string stack;
  std::string crash = describe_crash(read_crash_report(crash_fd_), child_->pid(), sig, stack);
  std::string tail = stderr_ ? stderr_->tail(std::chrono::milliseconds(1000)) : std::string();
  std::string note = tail.empty() ? std::string()
                                  : "; the last " + std::to_string(tail.size()) +
                                        " bytes it wrote to stderr:\n" + tail;
  if (sandbox_ && !started_->is_ready()) {
    std::string why = sandbox_->setup_failure();
    if (!why.empty())
      return std::make_exception_ptr(spawn_error(who + ": its sandbox could not be set up (" + why +
                                                 "); the object was never constructed" + note));
  }
  const std::string sandboxed =
      sandbox_ ? sandbox_->death_note(sig, child_->cpu_time()) : std::string();
  if (!sandboxed.empty()) who += ": " + sandboxed;
  // The sandbox's verdict on a SIGSYS or SIGXCPU says what happened; "no stack: it usually comes
  // from outside" would contradict it.
  if (!sandboxed.empty() && (sig == SIGSYS || sig == SIGXCPU) && stack.empty()) crash.clear();
  if (!started_->is_ready())
    // The hint about procxy::init only where it can be the cause: the child exited by itself,
    // before constructing, with no crash report and no sandbox verdict (a signal, a sanitizer's
    // report on stderr or a blocked call says more than a guess).
    return std::make_exception_ptr(spawn_error(
        who +
        (!stack.empty() ? " while constructing the object"
         : sig == 0 && sandboxed.empty()
             ? " before constructing the object (if it is a program of your own, does its main() "
               "call procxy::init(argc, argv) first?)"
             : " before constructing the object") +
        crash + note));
  who += describe_calls_in_flight(conn_->calls_in_flight());
  return std::make_exception_ptr(
      child_crashed(who + crash + note, code, sig, std::move(tail), std::move(stack)));
}

void proxy_core::kill_after_timeout(const char* what) {
  mark_exit(true);
  conn_->break_with(
      std::make_exception_ptr(terminated(std::string("procxy: the child was killed because ") +
                                         what + " timed out (timeout_policy::kill_child)")));
  child_->kill(SIGKILL);  // the reader sees EOF; on_disconnect reaps
}

void proxy_core::on_dispose() {
  mark_exit(disposed);
  terminate("procxy: the object asked to be disposed of (this_child().dispose())");
}

void proxy_core::terminate(const char* reason) {
  // From the dispatch thread while another thread terminates (e.g. the on_exit handler, run on
  // the dispatch thread that terminate() is joining): that thread finishes the job.
  if (terminating_.load(std::memory_order_acquire) && conn_ && conn_->on_dispatch_thread()) return;
  std::lock_guard lk(terminate_mu_);
  if (terminated_ || !conn_) return;
  terminated_ = true;
  mark_exit(true);
  terminating_.store(true, std::memory_order_release);
  conn_->break_with(
      std::make_exception_ptr(terminated(reason ? reason : "procxy: the proxy was terminated")));
  // No callback starts on the user's executor from now on; those running finish first (their
  // calls of this proxy have just failed). No event listener runs again.
  conn_->callbacks().close();
  events_.clear();
  if (child_->alive()) {
    try {
      byte_buffer buf;
      encode_empty(buf, message_kind::shutdown);
      conn_->send(buf.view());
    } catch (...) {
      // already gone; the waits below reap it
    }
    conn_->shutdown_write();
    // Every call has failed: a thread blocked reading for its reply returns now, not when the
    // child has exited (up to the grace periods below).
    conn_->stop_reading();
    int grace = static_cast<int>(opts_.terminate_grace.count());
    if (!child_->wait_exit(grace)) {
      child_->kill(SIGTERM);
      if (!child_->wait_exit(grace)) {
        child_->kill(SIGKILL);
        child_->wait_exit(-1);
      }
    }
  }
  child_->wait_exit(-1);
  conn_->close();  // stops the dispatch loop and the I/O thread (joined)
  if (dispatch_.joinable()) {
    if (std::this_thread::get_id() == dispatch_.get_id())
      dispatch_.detach();  // terminated from its own callback: it exits when that returns
    else
      dispatch_.join();
  }
  conn_->callbacks().clear();  // none of the proxy's callbacks runs again
}

}  // namespace procxy::detail
