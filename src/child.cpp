// The child's side: init(), the serve loop, the method tables and the parent watchdog.
#include <dlfcn.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "crash.hpp"
#include "procxy/detail/method.hpp"
#include "procxy/detail/sandbox.hpp"
#include "procxy/detail/serve.hpp"
#include "procxy/detail/shm_transport.hpp"
#include "procxy/event.hpp"
#include "procxy/init.hpp"

namespace procxy {

namespace {
bool g_is_child = false;
}  // namespace

bool is_child() noexcept { return g_is_child; }

namespace detail {

byte_buffer& scratch_buffer() {
  thread_local byte_buffer buf;
  if (buf.capacity() > (std::size_t{4} << 20)) buf = byte_buffer();  // don't pin huge buffers
  return buf;
}

std::string member_name_from_signature(std::string_view pretty) {
  // g++:   "... member_name() [with auto MP = &Calculator::add]"
  // clang: "... member_name() [MP = &Calculator::add]"
  auto pos = pretty.find("MP = ");
  if (pos == std::string_view::npos) return std::string(pretty);
  auto s = pretty.substr(pos + 5);
  if (!s.empty() && s.front() == '&') s.remove_prefix(1);
  auto end = s.find_first_of(";]");
  return std::string(s.substr(0, end));
}

std::uint64_t register_method(method_table& table, std::uint64_t id, method_entry e) {
  auto [it, inserted] = table.emplace(id, e);
  if (!inserted && std::strcmp(it->second.name, e.name) != 0 && it->second.invoke != e.invoke) {
    std::fprintf(stderr, "procxy: method id collision between %s and %s\n", it->second.name,
                 e.name);
    std::abort();
  }
  return id;
}

namespace {
// Why spawn_options::module could not be loaded, for the construct reply.
std::string g_module_error;

// Loads spawn_options::module (procxy-host): its static initialisers register its classes.
void load_module() {
  const char* path = std::getenv("PROCXY_MODULE");
  if (path == nullptr) return;
  if (::dlopen(path, RTLD_NOW | RTLD_GLOBAL) == nullptr) {
    const char* why = ::dlerror();
    g_module_error = std::string("procxy: the module ") + path +
                     " could not be loaded in the child: " + (why ? why : "unknown error");
  }
  ::unsetenv("PROCXY_MODULE");
}
}  // namespace

namespace {
std::unordered_map<std::uint64_t, ctor_entry>& ctor_table() {
  static auto& table = *new std::unordered_map<std::uint64_t, ctor_entry>;  // never destroyed
  return table;
}
}  // namespace

std::uint64_t register_ctor(std::uint64_t id, ctor_entry e) {
  ctor_table().emplace(id, e);
  return id;
}

void reply_sink::current_exception() const {
  before();
  byte_buffer& buf = scratch_buffer();
  encode_reply_error(buf, id);
  if (conn->tracing()) conn->trace("send error #" + std::to_string(id) + " " + what);
  post(buf);
}

// Serves one object over one connection, on the object thread.
class child_server final : public endpoint {
 public:
  child_server() = default;
  ~child_server() override { destroy_object(); }

  void handle(frame&& f, connection& c) override {
    switch (f.header.kind) {
      case message_kind::construct: return construct(f, c);
      case message_kind::call: return call(f);
      case message_kind::subscribe: return subscribe(f, c);
      case message_kind::shutdown:
        decode_empty(f.header.kind, f.body.view());
        if (c.tracing()) c.trace("recv shutdown");
        destroy_object();
        c.stop();
        return;
      default:
        throw protocol_error(std::string("procxy: the child cannot handle a ") +
                             to_string(f.header.kind) + " message");
    }
  }

  // The property snapshot, before each reply and event of the object thread.
  void before_reply() override {
    if (!props_.empty()) snapshot();
  }

  void destroy_object() {
    if (obj_.obj) {
      props_.clear();
      void* p = std::exchange(obj_.obj, nullptr);  // no property snapshot of a dying object
      obj_.destroy(p);  // its destructor may still emit (the links outlive it)
    }
  }

 private:
  void construct(frame& f, connection& c) {
    if (constructed_) throw protocol_error("procxy: second construct message");
    constructed_ = true;
    conn_ = &c;  // the connection this object is served over, from now on
    byte_reader r(f.body.view());
    decoder d(r, nullptr, &f.fds);
    auto id = decode_target(d);
    const auto signature = d.get<std::string>();
    const auto described = d.get<described_members>();
    reply_sink reply{conn_->shared_from_this(), f.header.id, "constructor"};
    auto it = ctor_table().find(id);
    try {
      if (it == ctor_table().end() && !g_module_error.empty()) throw spawn_error(g_module_error);
      if (it == ctor_table().end())
        throw spawn_error(
            "procxy: the child has no constructor " + signature +
            " (the constructor never ran). A worker binary (spawn_mode::executable) must register "
            "each constructor a parent spawns with: PROCXY_CONSTRUCTOR(Class, argument types...), "
            "string-like arguments as std::string; a class described with PROCXY_INTERFACE has "
            "its constructors only there, never in the parent's own binary (re-exec, fork)");
      check_description(it->second, described);
      reply.what = it->second.name;
      obj_ = it->second.make(d);
      obj_.class_name = it->second.name;
      attach_members();
      reply.value();  // after the first property snapshot (before_reply)
    } catch (const protocol_error&) {
      throw;
    } catch (...) {
      reply.current_exception();
      conn_->stop();  // nothing to serve: exit once the reply is out
    }
  }

  // Every member the parent's description names must be served here, with the same signature
  // (the wire id hashes both); else spawn_error naming each difference, before constructing.
  static void check_description(const ctor_entry& e, const described_members& described) {
    std::vector<std::string> here;  // what this executable serves, for the message
    for (const auto& [mid, m] : *e.methods) here.emplace_back(m.label);
    for (const auto& ev : e.members->events)
      here.emplace_back(std::string(ev.name) + " (an event)");
    for (const auto& p : e.members->properties)
      here.emplace_back(std::string(p.name) + " (a property)");
    std::string missing;
    for (const auto& [mid, label] : described) {
      bool served = e.methods->count(mid) != 0;
      for (const auto& ev : e.members->events) served = served || ev.id == mid;
      for (const auto& p : e.members->properties) served = served || p.id == mid;
      if (served) continue;
      missing += "\n  " + label;
      const std::string name = label.substr(0, label.find(": "));  // "Counter::add"
      for (const auto& h : here) {  // the same name served with another signature or kind
        if (h == label)
          missing +=
              " (the child has the same signature, but a type in it is built differently: a "
              "struct's fields differ between the two builds)";
        else if (h.compare(0, name.size(), name) == 0 && h.size() > name.size() &&
                 (h[name.size()] == ':' || h[name.size()] == ' '))
          missing += " (the child has " + h + ")";
      }
    }
    if (!missing.empty())
      throw spawn_error(std::string("procxy: the parent's description of ") + e.name +
                        " does not match the child's (different builds of the class?); the "
                        "parent describes members the child does not serve with the same types:" +
                        missing);
  }

  void call(frame& f) {
    if (!obj_.obj) throw protocol_error("procxy: call before the object was constructed");
    byte_reader r(f.body.view());
    decoder d(r, &conn_->callbacks(), &f.fds);
    auto id = decode_target(d);
    reply_sink reply{conn_->shared_from_this(), f.header.id, "method"};
    auto it = obj_.methods->find(id);
    if (it == obj_.methods->end()) {
      try {
        throw std::logic_error(std::string("procxy: ") + obj_.class_name +
                               " in the child has no method with this id (is the worker built "
                               "from the same PROCXY_CLASS description?)");
      } catch (...) {
        reply.current_exception();
      }
      return;
    }
    reply.what = it->second.name;
    it->second.invoke(obj_.obj, d, reply);
  }

  // Events: each listed event member gets a link (its id, whether the parent listens). Properties:
  // the last value sent of each, compared after every call and before every event.
  void attach_members() {
    if (obj_.members == nullptr) return;
    for (const auto& e : obj_.members->events) {
      auto link = std::make_unique<event_link>();
      link->id = e.id;
      link->name = e.name;
      link->conn = conn_;
      link->snapshot = !obj_.members->properties.empty();
      e.link(obj_.obj) = link.get();
      links_[e.id] = std::move(link);
    }
    props_.resize(obj_.members->properties.size());
  }

  // Sends the properties whose encoded value changed since the last snapshot (one frame).
  void snapshot() {
    if (!obj_.obj) return;
    const auto& table = obj_.members->properties;
    std::vector<std::size_t> changed;
    for (std::size_t i = 0; i < table.size(); ++i) {
      snap_.clear();
      encoder e(snap_);
      table[i].encode(obj_.obj, e);
      auto& last = props_[i];
      if (last.sent && last.bytes.size() == snap_.size() &&
          std::memcmp(last.bytes.data(), snap_.data(), snap_.size()) == 0)
        continue;
      last.bytes.clear();
      last.bytes.append(snap_.data(), snap_.size());
      last.sent = true;
      changed.push_back(i);
    }
    if (changed.empty()) return;
    byte_buffer buf;
    std::vector<property_value> values;
    values.reserve(changed.size());
    for (auto i : changed) values.push_back({table[i].id, props_[i].bytes.view()});
    encode_properties(buf, values);
    if (conn_->tracing())
      conn_->trace("send properties (" + std::to_string(changed.size()) + " changed)");
    conn_->send(buf.view());
  }

  void subscribe(frame& f, connection& c) {
    auto [id, on] = decode_subscribe(f.body.view());
    auto it = links_.find(id);
    if (it == links_.end()) return;  // an event this build does not have: nothing to forward
    if (c.tracing())
      c.trace(std::string("recv ") + (on ? "subscribe " : "unsubscribe ") + it->second->name);
    it->second->listened.store(on, std::memory_order_release);
  }

  struct property_state {
    byte_buffer bytes;
    bool sent = false;
  };

  connection* conn_ = nullptr;  // set by construct (the connection owns this server)
  served_object obj_;
  bool constructed_ = false;
  std::unordered_map<std::uint64_t, std::unique_ptr<event_link>> links_;
  std::vector<property_state> props_;
  byte_buffer snap_;
};

namespace {

// Kills this process shortly after the parent is gone, even if the object thread is stuck in a
// call and never sees EOF. pidfd_open + a re-check of getppid() closes the window in which the
// parent died before we looked (PR_SET_PDEATHSIG would follow the parent *thread* that spawned
// us, which may exit long before the parent process does). The pidfd is opened before the
// sandbox is applied (a PID namespace hides the parent), the thread started after.
int open_parent(pid_t parent) {
  int pfd = static_cast<int>(::syscall(SYS_pidfd_open, parent, 0));
  if (pfd < 0 || ::getppid() != parent) _exit(111);
  return pfd;
}

void watch_parent(int pfd) {
  std::thread([pfd] {
    pollfd p{pfd, POLLIN, 0};
    while (::poll(&p, 1, -1) < 0 && errno == EINTR) {
    }
    // Give the object thread a moment to see EOF and run the destructor, then go.
    ::usleep(2'000'000);
    _exit(111);
  }).detach();
}

}  // namespace

int serve(int fd, int shm_fd, std::size_t shm_ring, std::size_t max_message_size, pid_t parent,
          int crash_fd) {
  g_is_child = true;
  // First, so that a crash anywhere after it (the module, the constructor) is reported.
  install_crash_handler(crash_fd);
  const int parent_fd = open_parent(parent);
  // The module is loaded before the sandbox: the loader opens and maps files that the strict
  // profile forbids (docs/design.md "Plugins": its static initialisers run unsandboxed, like the
  // host's own).
  load_module();
  if (std::getenv(sandbox_spec_env) != nullptr) remember_mappings();  // for crash reports
  apply_sandbox_from_environment();  // docs/design.md "Sandbox": before anything is served
  crash_handler_follows_fork();      // a PID namespace serves from a fork (src/sandbox.cpp)
  watch_parent(parent_fd);
  auto server = std::make_shared<child_server>();
  connection::options o;
  o.s = connection::side::child;
  o.max_message_size = max_message_size;
  o.peer_pid = parent;
  if (const char* v = std::getenv("PROCXY_MAX_CALLBACKS"))
    o.max_callbacks = static_cast<std::size_t>(std::strtoull(v, nullptr, 10));
  if (const char* v = std::getenv("PROCXY_CALLBACK_TIMEOUT_MS"))
    o.callback_timeout = std::chrono::milliseconds(std::strtoll(v, nullptr, 10));
  if (const char* v = std::getenv("PROCXY_MAX_FDS"))
    o.max_descriptors = std::min<std::size_t>(std::strtoull(v, nullptr, 10), max_descriptors_limit);
  auto conn =
      connection::create(shm_fd >= 0 ? make_shm_transport(fd, shm_fd, shm_ring, 1, shm::may_spin())
                                     : make_socket_transport(fd),
                         server, o);
  ::unsetenv("PROCXY_MAX_CALLBACKS");
  ::unsetenv("PROCXY_CALLBACK_TIMEOUT_MS");
  ::unsetenv("PROCXY_MAX_FDS");
  const char* bt = std::getenv("PROCXY_BACKTRACE");
  if (bt && std::strcmp(bt, "1") == 0) enable_throw_backtraces(true);
  set_child_connection(conn.get());
  crash_handler_waits_for(&conn->replies_handed_off());
  conn->run_dispatch_loop();
  server->destroy_object();
  // What is still queued (the last replies) goes out before the process ends.
  conn->close(std::chrono::milliseconds(1000));
  crash_handler_waits_for(nullptr);
  set_child_connection(nullptr);
  std::fflush(stdout);
  std::fflush(stderr);
  return 0;
}

}  // namespace detail

void init(int /*argc*/, char** argv) {
  if (argv && argv[0]) detail::set_program_name(argv[0]);
  const char* fdv = std::getenv("PROCXY_CHANNEL_FD");
  if (fdv == nullptr) return;
  int fd = std::atoi(fdv);
  const char* pp = std::getenv("PROCXY_PARENT_PID");
  const char* mm = std::getenv("PROCXY_MAX_MESSAGE");
  const char* shm_fd = std::getenv("PROCXY_SHM_FD");
  const char* shm_ring = std::getenv("PROCXY_SHM_RING");
  const char* crash = std::getenv("PROCXY_CRASH_FD");
  const int crash_fd = crash ? std::atoi(crash) : -1;
  const int sfd = shm_fd && shm_ring ? std::atoi(shm_fd) : -1;
  const std::size_t ring =
      shm_ring ? static_cast<std::size_t>(std::strtoull(shm_ring, nullptr, 10)) : 0;
  pid_t parent = pp ? static_cast<pid_t>(std::atol(pp)) : ::getppid();
  std::size_t max =
      mm ? static_cast<std::size_t>(std::strtoull(mm, nullptr, 10)) : (std::size_t{256} << 20);
  ::unsetenv("PROCXY_CHANNEL_FD");
  ::unsetenv("PROCXY_PARENT_PID");
  ::unsetenv("PROCXY_MAX_MESSAGE");
  ::unsetenv("PROCXY_SHM_FD");
  ::unsetenv("PROCXY_SHM_RING");
  ::unsetenv("PROCXY_CRASH_FD");
  // A re-executed child runs /proc/self/exe, so the kernel names it "exe"; give it the parent's
  // program name, as ps, top and pkill show it (at most 15 bytes, the kernel's limit).
  if (argv && argv[0]) {
    const char* base = std::strrchr(argv[0], '/');
    ::prctl(PR_SET_NAME, base ? base + 1 : argv[0], 0, 0, 0);
  }
  _exit(detail::serve(fd, sfd, ring, max, parent, crash_fd));
}

}  // namespace procxy
