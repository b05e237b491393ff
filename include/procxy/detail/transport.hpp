// procxy/detail/transport.hpp — the byte pipe under a connection: the seam other transports
// (shared memory, TCP) plug into.
//
// A transport moves bytes both ways between two endpoints, lets a thread wait for "readable",
// "writable" or "woken", and shuts down. It knows nothing of frames, calls or threads: the
// connection (connection.hpp) decides who reads and who writes (docs/design.md "Liveness").
//
// Contract, per operation:
//   read()         blocks until at least one byte is there; returns the count, 0 at EOF.
//                  Called by one thread at a time (the connection's reading role).
//   write_some()   never blocks: writes what fits now, returns the count (0: full).
//                  Called by one thread at a time (the connection's writing role).
//   wait()         blocks until one of the asked conditions holds, wake(slot) was called for
//                  the slot given, or the deadline passed. Several threads may wait at once,
//                  each on its own wake slot.
//   wake(slot)     makes the current or next wait() on that slot return. Any thread.
//   shutdown()     wakes every reader (EOF) and writer (error); idempotent, any thread.
//   shutdown_read()  the same for readers only (terminate: nothing more from the peer matters).
//
// Descriptors (docs/design.md "Descriptors") travel beside the bytes: write_with_descriptors()
// sends them with its first byte, which is the start of the frame that announces them; the
// receiver learns from take_descriptors() which byte range of the stream the frame carrying each
// group starts in, and the connection matches groups to frames.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "procxy/error.hpp"
#include "procxy/unique_fd.hpp"

namespace procxy::detail {

// The most descriptors one message may carry (SCM_MAX_FD, the kernel's limit per sendmsg).
inline constexpr std::size_t max_descriptors_limit = 253;

// Descriptors that arrived together: one frame's. The frame that announces them starts at a
// stream position (bytes read from this transport since it was made) in [lo, hi).
struct descriptor_group {
  std::uint64_t lo = 0, hi = 0;
  std::vector<unique_fd> fds;
};

class transport {
 public:
  using time_point = std::chrono::steady_clock::time_point;
  // Who waits: the thread holding the reading role, or the connection's I/O thread.
  enum class wake_slot { reader = 0, io = 1 };
  struct wait_result {
    bool readable = false;  // data, EOF or an error is pending for read()
    bool writable = false;
    bool woken = false;
    bool timed_out() const noexcept { return !readable && !writable && !woken; }
  };

  virtual ~transport() = default;

  // Throws procxy::terminated when the peer is gone (EPIPE/ECONNRESET).
  virtual std::size_t write_some(const std::byte* p, std::size_t n) = 0;
  // Returns the bytes read (> 0) or 0 at EOF. A broken connection (ECONNRESET) is EOF too:
  // `reset` is set so that the reader can tell a peer that died with our bytes unread.
  virtual std::size_t read(std::byte* p, std::size_t n, bool& reset) = 0;
  virtual wait_result wait(bool readable, bool writable, wake_slot slot, time_point deadline) = 0;
  virtual void wake(wake_slot slot) noexcept = 0;
  virtual void shutdown() noexcept = 0;
  // No more bytes will be written by this side (the peer reads EOF after what was sent).
  virtual void shutdown_write() noexcept = 0;
  // No more bytes will be read by this side: a reader blocked in read() returns 0 (EOF) now, as
  // does every later read, and waits for readable return at once. The peer's writes may fail.
  virtual void shutdown_read() noexcept = 0;
  // Whether file descriptors can travel with the bytes (SCM_RIGHTS on a unix socket).
  virtual bool can_pass_descriptors() const noexcept = 0;
  // Whether a write costs a system call (a socket) rather than a copy into memory the peer
  // reads (rings): the connection then lets its I/O thread gather a busy sender's frames.
  virtual bool writes_are_syscalls() const noexcept = 0;
  // As write_some(), and the first byte starts a frame carrying `fds` (not empty): they are sent
  // with that byte, or not at all when nothing was written (0). Throws serialization_error where
  // descriptors cannot travel.
  virtual std::size_t write_with_descriptors(const std::byte* p, std::size_t n,
                                             std::span<const int> fds) {
    if (!fds.empty())
      throw serialization_error(std::string("procxy: the ") + name() +
                                " transport cannot pass descriptors");
    return write_some(p, n);
  }
  // Moves the descriptors received so far into `out`, in arrival order (the reading role, after
  // read()). `needed`: a frame that announces descriptors found none; look now. Throws
  // protocol_error when the peer sent them malformed (their descriptors are closed).
  virtual void take_descriptors(std::deque<descriptor_group>& /*out*/, bool /*needed*/) {}
  // Whether a group may arrive before the bytes of its frame (then its range lies ahead of what
  // was read); otherwise a group whose range starts past a frame still incomplete is a stray.
  virtual bool descriptors_precede_bytes() const noexcept { return false; }
  virtual const char* name() const noexcept = 0;
};

// A connected AF_UNIX stream socket (a socketpair between parent and child). Takes ownership of
// `fd`; the descriptor is closed by the destructor, never earlier (a thread may be inside a
// syscall on it; shutdown() is what wakes it).
std::unique_ptr<transport> make_socket_transport(int fd);

}  // namespace procxy::detail
