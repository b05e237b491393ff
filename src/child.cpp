// The child's side: init(), the serve loop, the method tables and the parent watchdog.
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "procxy/detail/method.hpp"
#include "procxy/detail/serve.hpp"
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
    std::fprintf(stderr, "procxy: method id collision between %s and %s\n", it->second.name, e.name);
    std::abort();
  }
  return id;
}

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
  byte_buffer& buf = scratch_buffer();
  build_frame(buf, message_kind::reply_error, id, [](encoder& e) { encode_current_exception(e); });
  if (conn->tracing()) conn->trace("send error #" + std::to_string(id) + " " + what);
  conn->send(buf.view());
}

// Serves one object over one connection, on the object thread.
class child_server final : public request_handler {
 public:
  explicit child_server(std::shared_ptr<connection> c) : conn_(std::move(c)) {}
  ~child_server() override { destroy_object(); }

  void handle(frame&& f, connection& c) override {
    switch (f.header.kind) {
      case message_kind::construct: return construct(f);
      case message_kind::call: return call(f);
      case message_kind::shutdown:
        if (conn_->tracing()) conn_->trace("recv shutdown");
        destroy_object();
        c.stop();
        return;
      default:
        throw protocol_error(std::string("procxy: the child cannot handle a ") +
                             to_string(f.header.kind) + " message");
    }
  }

  void destroy_object() {
    if (obj_.obj) {
      void* p = std::exchange(obj_.obj, nullptr);
      obj_.destroy(p);
    }
  }

 private:
  void construct(frame& f) {
    if (constructed_) throw protocol_error("procxy: second construct message");
    constructed_ = true;
    byte_reader r(f.body.view());
    decoder d(r);
    auto id = d.raw<std::uint64_t>();
    reply_sink reply{conn_, f.header.id, "constructor"};
    auto it = ctor_table().find(id);
    try {
      if (it == ctor_table().end())
        throw std::logic_error(
            "procxy: this executable has no registered constructor for the requested class and "
            "argument types (a worker binary needs PROCXY_CONSTRUCTOR(Class, Args...))");
      reply.what = it->second.name;
      obj_ = it->second.make(d);
      obj_.class_name = it->second.name;
      reply.value();
      conn_->flush();  // "constructed" is never held back behind a batch of calls
    } catch (const protocol_error&) {
      throw;
    } catch (...) {
      reply.current_exception();
      conn_->stop();  // nothing to serve: exit once the reply is out
    }
  }

  void call(frame& f) {
    if (!obj_.obj) throw protocol_error("procxy: call before the object was constructed");
    byte_reader r(f.body.view());
    decoder d(r, &conn_->callbacks());
    auto id = d.raw<std::uint64_t>();
    reply_sink reply{conn_, f.header.id, "method"};
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

  std::shared_ptr<connection> conn_;
  served_object obj_;
  bool constructed_ = false;
};

namespace {

// Kills this process shortly after the parent is gone, even if the object thread is stuck in a
// call and never sees EOF. pidfd_open + a re-check of getppid() closes the window in which the
// parent died before we looked (PR_SET_PDEATHSIG would follow the parent *thread* that spawned
// us, which may exit long before the parent process does).
void watch_parent(pid_t parent) {
  int pfd = static_cast<int>(::syscall(SYS_pidfd_open, parent, 0));
  if (pfd < 0 || ::getppid() != parent) _exit(111);
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

int serve(int fd, std::size_t max_message_size, pid_t parent) {
  g_is_child = true;
  watch_parent(parent);
  auto conn = std::make_shared<connection>(fd, connection::side::child, max_message_size);
  conn->set_peer_pid(parent);
  if (const char* v = std::getenv("PROCXY_MAX_CALLBACKS"))
    conn->callbacks().set_limit(static_cast<std::size_t>(std::strtoull(v, nullptr, 10)));
  if (const char* v = std::getenv("PROCXY_CALLBACK_TIMEOUT_MS"))
    conn->callbacks().set_invoke_timeout(std::chrono::milliseconds(std::strtoll(v, nullptr, 10)));
  ::unsetenv("PROCXY_MAX_CALLBACKS");
  ::unsetenv("PROCXY_CALLBACK_TIMEOUT_MS");
  const char* bt = std::getenv("PROCXY_BACKTRACE");
  if (bt && std::strcmp(bt, "1") == 0) enable_throw_backtraces(true);
  child_server server(conn);
  conn->set_handler(&server);
  conn->set_dispatch_thread(std::this_thread::get_id());
  conn->run_dispatch_loop();
  server.destroy_object();
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
  pid_t parent = pp ? static_cast<pid_t>(std::atol(pp)) : ::getppid();
  std::size_t max = mm ? static_cast<std::size_t>(std::strtoull(mm, nullptr, 10)) : (std::size_t{256} << 20);
  ::unsetenv("PROCXY_CHANNEL_FD");
  ::unsetenv("PROCXY_PARENT_PID");
  ::unsetenv("PROCXY_MAX_MESSAGE");
  _exit(detail::serve(fd, max, parent));
}

}  // namespace procxy
