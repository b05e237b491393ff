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
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

namespace procxy::detail {

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
  virtual const char* name() const noexcept = 0;
};

// A connected AF_UNIX stream socket (a socketpair between parent and child). Takes ownership of
// `fd`; the descriptor is closed by the destructor, never earlier (a thread may be inside a
// syscall on it; shutdown() is what wakes it).
std::unique_ptr<transport> make_socket_transport(int fd);

}  // namespace procxy::detail
