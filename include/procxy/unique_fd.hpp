// procxy/unique_fd.hpp — an owned file descriptor, and the way descriptors cross a process
// boundary (docs/design.md "Descriptors").
//
//   class Store { public: procxy::unique_fd open_log(); void write_to(procxy::unique_fd out); };
//   procxy::unique_fd log = store.open_log().get();   // a descriptor the child opened, now ours
//   store.write_to(std::move(pipe_end)).get();        // ours is closed; the child has its own
//
// Move-only; closes its descriptor on destruction. As a parameter, result, callback or event
// argument, or inside a struct or container, the descriptor itself crosses (SCM_RIGHTS): the
// receiver gets its own descriptor, close-on-exec, of the same open file (a file, pipe, socket,
// eventfd, memfd, pidfd...). Sending encodes a duplicate, closed once it is sent, so a unique_fd
// passed by value (moved in) is closed on this side when the call is made, and one passed as
// `const unique_fd&` (or emitted as an event) stays open here. An empty unique_fd crosses as
// empty.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>
#include <utility>

namespace procxy {

class unique_fd {
 public:
  unique_fd() noexcept = default;
  // Takes ownership of `fd` (-1: empty).
  explicit unique_fd(int fd) noexcept : fd_(fd) {}
  unique_fd(unique_fd&& o) noexcept : fd_(o.release()) {}
  unique_fd& operator=(unique_fd&& o) noexcept {
    if (this != &o) reset(o.release());
    return *this;
  }
  unique_fd(const unique_fd&) = delete;
  unique_fd& operator=(const unique_fd&) = delete;
  ~unique_fd() { reset(); }

  // The descriptor (-1 when empty); still owned by this object.
  int get() const noexcept { return fd_; }
  explicit operator bool() const noexcept { return fd_ >= 0; }
  // Gives the descriptor up without closing it.
  [[nodiscard]] int release() noexcept { return std::exchange(fd_, -1); }
  // Closes the descriptor held (if any) and takes `fd`.
  void reset(int fd = -1) noexcept {
    const int old = std::exchange(fd_, fd);
    if (old >= 0 && old != fd) ::close(old);
  }
  // A second descriptor of the same open file, close-on-exec. Throws std::system_error.
  unique_fd dup() const {
    const int d = ::fcntl(fd_, F_DUPFD_CLOEXEC, 0);
    if (d < 0) throw std::system_error(errno, std::system_category(), "procxy: unique_fd::dup");
    return unique_fd(d);
  }

  friend void swap(unique_fd& a, unique_fd& b) noexcept { std::swap(a.fd_, b.fd_); }

 private:
  int fd_ = -1;
};

}  // namespace procxy
