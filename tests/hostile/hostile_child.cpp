// A hostile child: a standalone program that a procxy parent starts with spawn_mode::executable
// and that answers with malformed or unexpected frames. It links nothing of procxy; it uses only
// the frame header of include/procxy/detail/protocol.hpp.
//
//   procxy_hostile_child <mode> [call|construct]
//
// It reads the parent's hello and answers with the same (see the hello modes below), then reads
// the parent's construct frame from its channel (fd PROCXY_CHANNEL_FD). With `call` (the
// default) it accepts the construct (reply_value, same id, empty body), reads the first call
// frame and misbehaves in reply to it; with `construct` it misbehaves in reply to the construct
// frame itself. Modes:
//
//   garbage            4 KiB of pseudo-random bytes (fixed seed; the first header is invalid)
//   truncated          a header promising 100 bytes, 10 bytes, then exit(0)
//   truncated_hang     the same, then stay alive (reading and discarding until EOF)
//   oversize           a header with size = PROCXY_MAX_MESSAGE + 1, and that many bytes
//   unknown_kind       a frame of kind 99
//   reserved_bits      a reply with the u16 reserved field set
//   flag_bits          a reply with the u8 flags field set
//   unknown_reply_id   a well-formed reply_value (a double) to request id 12345
//   duplicate_reply    the correct reply (a + b of add(double, double)), twice, in one write
//   bad_body           reply_value with a 2-byte body (the result is a double: 8 bytes)
//   trailing_bytes     reply_value with a double and 3 more bytes
//   bad_error_payload  reply_error with exception code 200 (unknown), well-formed otherwise
//   wrong_kind         a `construct` frame sent to the parent
//   unknown_event      an `event` frame for an event id the parent never listened to
//   bad_properties     a `properties` frame whose value length runs past the body
//   dispose_body       a `dispose` frame with a body
//   no_hello           no hello frame: the construct reply comes first (a child of protocol 1)
//   bad_hello_version  a hello with protocol 999 and build id "procxy 9.9.9 hostile"
//   bad_hello_body     a hello whose body is 2 bytes (a u32 version does not fit)
//   fd_unannounced     the correct reply, with 2 descriptors (of /dev/null) the header does not
//                      announce
//   fd_more_than_announced  the correct reply announcing 1 descriptor, with 3
//   fd_announced_none  the correct reply announcing 1 descriptor, with none
//   fd_mid_frame       the correct reply, with 2 descriptors attached to a byte inside it
//   fd_announced_on_error  a reply_error announcing a descriptor (a kind that carries none)
//                      (each fd_ mode: over the socket as SCM_RIGHTS with the bytes; over shared
//                      memory as procxy's descriptor record on the socket beside the rings)
//   crash_report       no reply: a forged crash report on its crash pipe (PROCXY_CRASH_FD: a FIFO
//                      named as a module, absurd offsets, a path longer than the report may
//                      be), then death by SIGSEGV (src/crash.cpp's reader must stay bounded)
//
// Over the shared-memory transport (PROCXY_SHM_FD set) it speaks through the rings with an
// implementation of its own (it never sleeps on its futex: it polls, and rings the parent's
// word after each write), and these modes break the ring instead of the frames, in reply to
// the call:
//
//   ring_head_past       its write index a ring and a byte ahead of the parent's read index
//   ring_head_backwards  the correct reply; once read, its write index moved back 8 bytes
//   ring_tail_backwards  its read index of the parent's ring moved back to 0
//   ring_tail_past       its read index of the parent's ring 2^40 bytes past what the parent wrote
//   ring_no_wake         correct replies, never ringing the parent's wake word (stuck at 0)
//   ring_bell_spam       no reply; rings the parent's wake word over and over
//   ring_truncate        tries to shrink and grow the shared memory, then replies correctly
//
// After misbehaving it stays alive, reading and discarding until EOF (so the parent has to kill
// it), except `truncated`. alarm(60) bounds its life if a broken parent never does.
#include <fcntl.h>
#include <linux/futex.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <atomic>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "procxy/detail/protocol.hpp"
#include "procxy/detail/shm_transport.hpp"  // the layout constants only

namespace {

using procxy::detail::frame_header;
using procxy::detail::header_size;
using procxy::detail::message_kind;

namespace shm = procxy::detail::shm;

int g_fd = -1;

// The shared-memory side, when the parent chose it: this child is side 1; it reads ring 0 and
// writes ring 1.
struct rings {
  char* base = nullptr;
  std::size_t size = 0;
  int memfd = -1;
  std::uint64_t tail = 0;  // read from ring 0
  std::uint64_t head = 0;  // written to ring 1
  bool ring_parent = true;
  template <class T>
  std::atomic_ref<T> at(std::size_t off) {
    return std::atomic_ref<T>(*reinterpret_cast<T*>(base + off));
  }
  void wake_parent() {
    if (!ring_parent) return;
    shm::full_fence();
    auto* bell = reinterpret_cast<std::uint32_t*>(base + shm::off_bell(0));
    std::atomic_ref<std::uint32_t>(*bell).fetch_add(1);
    ::syscall(SYS_futex, bell, FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
  }
  void publish_head(std::uint64_t h) {
    at<std::uint64_t>(shm::off_head(1)).store(h, std::memory_order_release);
    wake_parent();
  }
} g_shm;

bool parent_hung_up(int timeout_ms) {
  pollfd p{g_fd, POLLRDHUP, 0};
  return ::poll(&p, 1, timeout_ms) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

// Reads what is there (waits for at least one byte); 0 at EOF.
std::size_t read_some(char* p, std::size_t n) {
  if (g_shm.base == nullptr) {
    ssize_t r = ::read(g_fd, p, n);
    return r > 0 ? static_cast<std::size_t>(r) : 0;
  }
  const std::size_t mask = g_shm.size - 1;
  char* data = g_shm.base + shm::off_data(0, g_shm.size);
  for (;;) {
    const std::uint64_t h =
        g_shm.at<std::uint64_t>(shm::off_head(0)).load(std::memory_order_acquire);
    if (h != g_shm.tail) {
      std::size_t k = static_cast<std::size_t>(std::min<std::uint64_t>(h - g_shm.tail, n));
      for (std::size_t i = 0; i < k; ++i) p[i] = data[(g_shm.tail + i) & mask];
      g_shm.tail += k;
      g_shm.at<std::uint64_t>(shm::off_tail(0)).store(g_shm.tail, std::memory_order_release);
      g_shm.wake_parent();
      return k;
    }
    if (g_shm.at<std::uint32_t>(shm::off_closed(0)).load() != 0 || parent_hung_up(1)) return 0;
  }
}

bool read_exact(void* out, std::size_t n) {
  auto* p = static_cast<char*>(out);
  while (n > 0) {
    std::size_t r = read_some(p, n);
    if (r == 0) return false;
    p += r;
    n -= r;
  }
  return true;
}

void write_all(const std::vector<char>& bytes) {
  const char* p = bytes.data();
  std::size_t n = bytes.size();
  if (g_shm.base != nullptr) {
    const std::size_t mask = g_shm.size - 1;
    char* data = g_shm.base + shm::off_data(1, g_shm.size);
    while (n > 0) {
      const std::uint64_t t =
          g_shm.at<std::uint64_t>(shm::off_tail(1)).load(std::memory_order_acquire);
      std::size_t room = g_shm.size - static_cast<std::size_t>(g_shm.head - t);
      if (room == 0) {
        if (parent_hung_up(1)) _exit(3);
        continue;
      }
      std::size_t k = std::min(room, n);
      for (std::size_t i = 0; i < k; ++i) data[(g_shm.head + i) & mask] = p[i];
      g_shm.head += k;
      g_shm.publish_head(g_shm.head);
      p += k;
      n -= k;
    }
    return;
  }
  while (n > 0) {
    ssize_t w = ::send(g_fd, p, n, MSG_NOSIGNAL);
    if (w <= 0) _exit(3);
    p += w;
    n -= static_cast<std::size_t>(w);
  }
}

struct frame {
  frame_header h;
  std::vector<char> body;
};

frame read_frame() {
  frame f;
  if (!read_exact(&f.h, header_size)) _exit(4);
  f.body.resize(f.h.size);
  if (f.h.size > 0 && !read_exact(f.body.data(), f.h.size)) _exit(4);
  return f;
}

// Appends a frame with the given header fields and body to `out`.
void append_frame(std::vector<char>& out, message_kind kind, std::uint64_t id,
                  const std::vector<char>& body, std::uint32_t size_field, std::uint8_t flags = 0,
                  std::uint16_t reserved = 0) {
  frame_header h;
  h.size = size_field;
  h.kind = kind;
  h.flags = flags;
  h.descriptors = reserved;
  h.id = id;
  const char* hp = reinterpret_cast<const char*>(&h);
  out.insert(out.end(), hp, hp + header_size);
  out.insert(out.end(), body.begin(), body.end());
}
void append_frame(std::vector<char>& out, message_kind kind, std::uint64_t id,
                  const std::vector<char>& body) {
  append_frame(out, kind, id, body, static_cast<std::uint32_t>(body.size()));
}

template <class T>
void put(std::vector<char>& out, const T& v) {
  const char* p = reinterpret_cast<const char*>(&v);
  out.insert(out.end(), p, p + sizeof v);
}
void put_string(std::vector<char>& out, const std::string& s) {
  put(out, static_cast<std::uint32_t>(s.size()));
  out.insert(out.end(), s.begin(), s.end());
}

// Sends `bytes` with `n` descriptors of /dev/null attached at offset `at` of them: over the socket
// the bytes from `at` on go in one sendmsg carrying the descriptors; over shared memory a
// descriptor record (u64 stream position, u32 count) with them goes on the socket first, then
// the bytes into the ring, as procxy's own transport does.
void write_with_fds(const std::vector<char>& bytes, int n, std::size_t at) {
  std::vector<int> fds;
  for (int i = 0; i < n; ++i) fds.push_back(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  auto send_fds = [&](const char* p, std::size_t len) {
    iovec iov{const_cast<char*>(p), len};
    alignas(cmsghdr) char control[CMSG_SPACE(16 * sizeof(int))];
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(fds.size() * sizeof(int));
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(fds.size() * sizeof(int));
    std::memcpy(CMSG_DATA(c), fds.data(), fds.size() * sizeof(int));
    if (::sendmsg(g_fd, &msg, MSG_NOSIGNAL) != static_cast<ssize_t>(len)) _exit(3);
  };
  if (g_shm.base != nullptr) {
    std::vector<char> record;
    put(record, static_cast<std::uint64_t>(g_shm.head + at));
    put(record, static_cast<std::uint32_t>(n));
    if (n > 0) {
      send_fds(record.data(), record.size());
      static std::uint64_t records = 0;  // counted before the bytes are published, as procxy does
      g_shm.at<std::uint64_t>(shm::off_records(1)).store(++records, std::memory_order_release);
    }
    write_all(bytes);
  } else if (n == 0) {
    write_all(bytes);
  } else {
    write_all(std::vector<char>(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(at)));
    send_fds(bytes.data() + at, bytes.size() - at);
  }
  for (int fd : fds) ::close(fd);
}

[[noreturn]] void drain_until_eof() {
  char buf[4096];
  while (read_some(buf, sizeof buf) > 0) {
  }
  _exit(0);
}

// The result a well-behaved child would send for add(a, b): the call body is u64 method id,
// then the two doubles.
double sum_of(const frame& call) {
  double a = 0, b = 0;
  if (call.body.size() >= 24) {
    std::memcpy(&a, call.body.data() + 8, 8);
    std::memcpy(&b, call.body.data() + 16, 8);
  }
  return a + b;
}

frame read_frame();

// The ring modes: break the shared-memory rings' rules in reply to `request`.
[[noreturn]] void break_ring(const std::string& mode, const frame& request) {
  if (g_shm.base == nullptr) {
    std::fprintf(stderr, "procxy_hostile_child: %s needs the shared-memory transport\n",
                 mode.c_str());
    _exit(2);
  }
  std::vector<char> reply;
  std::vector<char> sum;
  put(sum, sum_of(request));
  append_frame(reply, message_kind::reply_value, request.h.id, sum);
  if (mode == "ring_head_past") {
    g_shm.publish_head(g_shm.head + g_shm.size + 1);
  } else if (mode == "ring_head_backwards") {
    write_all(reply);  // then, once the parent has read it all, move the index back
    while (g_shm.at<std::uint64_t>(shm::off_tail(1)).load(std::memory_order_acquire) != g_shm.head)
      if (parent_hung_up(1)) _exit(0);
    g_shm.publish_head(g_shm.head - 8);
  } else if (mode == "ring_tail_backwards") {
    // Back to 0: the parent has seen at least the hello and the construct frame read.
    g_shm.at<std::uint64_t>(shm::off_tail(0)).store(0, std::memory_order_release);
    g_shm.wake_parent();
  } else if (mode == "ring_tail_past") {
    const std::uint64_t written =
        g_shm.at<std::uint64_t>(shm::off_head(0)).load(std::memory_order_acquire);
    g_shm.at<std::uint64_t>(shm::off_tail(0))
        .store(written + (std::uint64_t{1} << 40), std::memory_order_release);
    g_shm.wake_parent();
  } else if (mode == "ring_no_wake") {
    g_shm.ring_parent = false;
    for (frame f = request;; f = read_frame()) {
      std::vector<char> out, s2;
      put(s2, sum_of(f));
      append_frame(out, message_kind::reply_value, f.h.id, s2);
      write_all(out);
    }
  } else if (mode == "ring_bell_spam") {
    auto* bell = reinterpret_cast<std::uint32_t*>(g_shm.base + shm::off_bell(0));
    while (!parent_hung_up(0)) {
      std::atomic_ref<std::uint32_t>(*bell).fetch_add(1);
      ::syscall(SYS_futex, bell, FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
    }
    _exit(0);
  } else if (mode == "ring_truncate") {
    const bool shrunk = ::ftruncate(g_shm.memfd, 0) == 0;
    const bool grown =
        ::ftruncate(g_shm.memfd, static_cast<off_t>(shm::mapping_size(g_shm.size) * 2)) == 0;
    if (shrunk || grown) _exit(9);  // the seals did not hold: the parent may already have crashed
    write_all(reply);
  } else {
    std::fprintf(stderr, "procxy_hostile_child: unknown mode '%s'\n", mode.c_str());
    _exit(2);
  }
  if (mode == "ring_tail_backwards" || mode == "ring_tail_past") {
    // Reading on would publish the true read index again: wait for the end instead.
    while (!parent_hung_up(100)) {
    }
    _exit(0);
  }
  drain_until_eof();
}

// A crash report as procxy's handler writes one (src/crash.cpp), forged: the parent must read
// it within its bounds and open nothing that could block. The FIFO is left for the test to
// remove (/tmp/procxy-hostile-fifo-<pid>).
[[noreturn]] void forge_crash_report() {
  const char* fdv = std::getenv("PROCXY_CRASH_FD");
  if (fdv == nullptr) _exit(10);
  const int fd = std::atoi(fdv);
  const std::string fifo = "/tmp/procxy-hostile-fifo-" + std::to_string(::getpid());
  ::mkfifo(fifo.c_str(), 0600);
  struct stat st {};
  ::stat(fifo.c_str(), &st);
  char dev[32];
  std::snprintf(dev, sizeof dev, "%02x:%02x", ::major(st.st_dev), ::minor(st.st_dev));
  const std::string file = std::string(dev) + " " + std::to_string(st.st_ino) + " ";
  std::string r = "procxy-crash 1\nsignal 11 code 1 sender 0 addr 0xdeadbeef tid 1\nframes 64\n";
  r += "frame 0 0x1000 1 0x0 " + file + fifo + "\n";                   // a FIFO as a module
  r += "frame 1 0x2000 0 0xffffffffffffffff 00:00 1 /etc/hostname\n";  // absurd offset
  r += "frame 2 0x3000 0 0x10 " + file + "/" + std::string(100 << 10, 'x') + "\n";  // past 64 KiB
  for (std::size_t off = 0; off < r.size();) {  // the pipe is non-blocking: what fits
    ssize_t n = ::write(fd, r.data() + off, r.size() - off);
    if (n <= 0) break;
    off += static_cast<std::size_t>(n);
  }
  ::signal(SIGSEGV, SIG_DFL);
  ::raise(SIGSEGV);
  _exit(11);
}

[[noreturn]] void misbehave(const std::string& mode, const frame& request) {
  const std::uint64_t id = request.h.id;
  std::vector<char> out;
  std::vector<char> a_double;
  put(a_double, 3.0);
  if (mode.rfind("ring_", 0) == 0) break_ring(mode, request);
  if (mode == "crash_report") forge_crash_report();
  if (mode.rfind("fd_", 0) == 0) {
    std::vector<char> sum;
    put(sum, sum_of(request));
    if (mode == "fd_unannounced") {
      append_frame(out, message_kind::reply_value, id, sum);
      write_with_fds(out, 2, 0);
    } else if (mode == "fd_more_than_announced") {
      append_frame(out, message_kind::reply_value, id, sum, 8, 0, 1);
      write_with_fds(out, 3, 0);
    } else if (mode == "fd_announced_none") {
      append_frame(out, message_kind::reply_value, id, sum, 8, 0, 1);
      write_with_fds(out, 0, 0);
    } else if (mode == "fd_mid_frame") {
      append_frame(out, message_kind::reply_value, id, sum);
      write_with_fds(out, 2, header_size + 3);
    } else if (mode == "fd_announced_on_error") {
      std::vector<char> body;
      put(body, static_cast<std::uint8_t>(200));
      put_string(body, "x");
      put_string(body, "y");
      put_string(body, "");
      append_frame(out, message_kind::reply_error, id, body,
                   static_cast<std::uint32_t>(body.size()), 0, 1);
      write_with_fds(out, 1, 0);
    } else {
      std::fprintf(stderr, "procxy_hostile_child: unknown mode '%s'\n", mode.c_str());
      _exit(2);
    }
    drain_until_eof();
  }
  if (mode == "garbage") {
    std::uint64_t x = 0x9e3779b97f4a7c15ull;  // xorshift64, fixed seed: the same bytes every run
    for (int i = 0; i < 4096; ++i) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      out.push_back(static_cast<char>(x & 0xff));
    }
    // The first header must be invalid however the seed falls: kind outside 1..5.
    if (static_cast<std::uint8_t>(out[4]) >= 1 && static_cast<std::uint8_t>(out[4]) <= 5)
      out[4] = '\x77';
  } else if (mode == "truncated" || mode == "truncated_hang") {
    append_frame(out, message_kind::reply_value, id, std::vector<char>(10, 'x'), 100);
  } else if (mode == "oversize") {
    const char* mm = std::getenv("PROCXY_MAX_MESSAGE");
    unsigned long long max = mm ? std::strtoull(mm, nullptr, 10) : 0;
    if (max == 0 || max >= 0xffffffffull) max = 0xfffffffeull;
    std::vector<char> body(max + 1 <= (1u << 20) ? static_cast<std::size_t>(max + 1) : 0, 'o');
    append_frame(out, message_kind::reply_value, id, body, static_cast<std::uint32_t>(max + 1));
  } else if (mode == "unknown_kind") {
    append_frame(out, static_cast<message_kind>(99), id, {});
  } else if (mode == "reserved_bits") {
    append_frame(out, message_kind::reply_value, id, {}, 0, 0, 0x0100);
  } else if (mode == "flag_bits") {
    append_frame(out, message_kind::reply_value, id, {}, 0, 0x01, 0);
  } else if (mode == "unknown_reply_id") {
    append_frame(out, message_kind::reply_value, 12345, a_double);
  } else if (mode == "duplicate_reply") {
    std::vector<char> sum;
    put(sum, sum_of(request));
    append_frame(out, message_kind::reply_value, id, sum);
    append_frame(out, message_kind::reply_value, id, sum);
  } else if (mode == "bad_body") {
    append_frame(out, message_kind::reply_value, id, {'\x01', '\x02'});
  } else if (mode == "trailing_bytes") {
    std::vector<char> body = a_double;
    body.insert(body.end(), {'t', 't', 't'});
    append_frame(out, message_kind::reply_value, id, body);
  } else if (mode == "bad_error_payload") {
    std::vector<char> body;
    put(body, static_cast<std::uint8_t>(200));   // exception code: unknown
    put_string(body, "hostile_error");           // type name
    put_string(body, "from the hostile child");  // what
    put_string(body, "");                        // backtrace
    append_frame(out, message_kind::reply_error, id, body);
  } else if (mode == "unknown_event") {
    std::vector<char> body;
    put(body, std::uint64_t{0xfeedface});  // an event id
    put(body, std::int32_t{1});
    append_frame(out, message_kind::event, 0, body);
  } else if (mode == "bad_properties") {
    std::vector<char> body;
    put(body, std::uint32_t{1});     // one property
    put(body, std::uint64_t{0x42});  // its id
    put(body, std::uint32_t{1000});  // 1,000 bytes of value promised, 4 present
    put(body, std::int32_t{7});
    append_frame(out, message_kind::properties, 0, body);
  } else if (mode == "dispose_body") {
    std::vector<char> body;
    put(body, std::int32_t{7});
    append_frame(out, message_kind::dispose, 0, body);
  } else if (mode == "wrong_kind") {
    std::vector<char> body;
    put(body, std::uint64_t{0x1234});  // a "constructor id"
    append_frame(out, message_kind::construct, 1, body);
  } else {
    std::fprintf(stderr, "procxy_hostile_child: unknown mode '%s'\n", mode.c_str());
    _exit(2);
  }
  write_all(out);
  if (mode == "truncated") _exit(0);
  drain_until_eof();
}

}  // namespace

int main(int argc, char** argv) {
  ::alarm(60);  // hang guard: never outlive a broken test by more than a minute
  ::signal(SIGPIPE, SIG_IGN);
  const char* fdv = std::getenv("PROCXY_CHANNEL_FD");
  if (fdv == nullptr || argc < 2) {
    std::fprintf(stderr,
                 "usage: start procxy_hostile_child with procxy::spawn (spawn_mode::executable, "
                 "args {mode, [call|construct]})\n");
    return 2;
  }
  g_fd = std::atoi(fdv);
  if (const char* m = std::getenv("PROCXY_SHM_FD")) {
    const char* r = std::getenv("PROCXY_SHM_RING");
    g_shm.memfd = std::atoi(m);
    g_shm.size = r ? static_cast<std::size_t>(std::strtoull(r, nullptr, 10)) : 0;
    void* p = ::mmap(nullptr, shm::mapping_size(g_shm.size), PROT_READ | PROT_WRITE, MAP_SHARED,
                     g_shm.memfd, 0);
    if (p == MAP_FAILED) _exit(8);
    g_shm.base = static_cast<char*>(p);
  }
  const std::string mode = argv[1];
  const std::string when = argc > 2 ? argv[2] : "call";

  // The parent's hello comes first. A well-behaved child answers with its own; this one echoes
  // the parent's (the same protocol and build id), or, in the hello modes, misbehaves with it
  // and then behaves (so the hello is the only fault).
  frame hello = read_frame();
  if (hello.h.kind != message_kind::hello) _exit(7);
  std::vector<char> greeting;
  if (mode == "bad_hello_version") {
    std::vector<char> body;
    put(body, std::uint32_t{999});
    put_string(body, "procxy 9.9.9 hostile");
    append_frame(greeting, message_kind::hello, 0, body);
  } else if (mode == "bad_hello_body") {
    append_frame(greeting, message_kind::hello, 0, {'\x02', '\x00'});
  } else if (mode != "no_hello") {
    append_frame(greeting, message_kind::hello, 0, hello.body);
  }
  if (!greeting.empty()) write_all(greeting);

  frame construct = read_frame();
  if (construct.h.kind != message_kind::construct) _exit(5);
  if (mode == "no_hello" || mode == "bad_hello_version" || mode == "bad_hello_body") {
    std::vector<char> ok;
    append_frame(ok, message_kind::reply_value, construct.h.id, {});
    write_all(ok);
    drain_until_eof();
  }
  if (when == "construct") misbehave(mode, construct);

  std::vector<char> ok;
  append_frame(ok, message_kind::reply_value, construct.h.id, {});
  write_all(ok);
  frame call = read_frame();
  if (call.h.kind != message_kind::call) _exit(6);
  misbehave(mode, call);
}
