// The socket transport: a connected AF_UNIX stream socket plus two eventfds to wake waiters.
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <system_error>

#include "procxy/detail/transport.hpp"
#include "procxy/error.hpp"

namespace procxy::detail {

namespace {

int poll_timeout_ms(transport::time_point deadline) {
  if (deadline == transport::time_point::max()) return -1;
  auto left =
      std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now())
          .count();
  if (left <= 0) return 0;
  return left > 1'000'000 ? 1'000'000 : static_cast<int>(left);
}

int make_eventfd() {
  int fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (fd < 0) throw std::system_error(errno, std::system_category(), "procxy: eventfd");
  return fd;
}

class socket_transport final : public transport {
 public:
  explicit socket_transport(int fd) : fd_(fd) {
    try {
      wake_[0] = make_eventfd();
      wake_[1] = make_eventfd();
    } catch (...) {
      if (wake_[0] >= 0) ::close(wake_[0]);
      ::close(fd_);
      throw;
    }
  }
  ~socket_transport() override {
    ::close(fd_);
    ::close(wake_[0]);
    ::close(wake_[1]);
  }

  std::size_t write_some(const std::byte* p, std::size_t n) override {
    for (;;) {
      ssize_t w = ::send(fd_, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (w >= 0) return static_cast<std::size_t>(w);
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return 0;
      throw terminated(std::string("procxy: the connection is closed (") + std::strerror(errno) +
                       ")");
    }
  }

  std::size_t read(std::byte* p, std::size_t n, bool& reset) override {
    reset = false;
    for (;;) {
      ssize_t r = ::read(fd_, p, n);
      if (r >= 0) return static_cast<std::size_t>(r);
      if (errno == EINTR) continue;
      if (errno == ECONNRESET) {
        reset = true;
        return 0;
      }
      if (errno == EBADF || errno == ENOTCONN) return 0;
      throw protocol_error(std::string("procxy: read failed: ") + std::strerror(errno));
    }
  }

  wait_result wait(bool readable, bool writable, wake_slot slot, time_point deadline) override {
    pollfd p[2] = {{fd_, static_cast<short>((readable ? POLLIN : 0) | (writable ? POLLOUT : 0)), 0},
                   {wake_[static_cast<int>(slot)], POLLIN, 0}};
    int r = ::poll(p, 2, poll_timeout_ms(deadline));
    wait_result out;
    if (r < 0) {
      if (errno == EINTR) return out;
      throw std::system_error(errno, std::system_category(), "procxy: poll");
    }
    if (r == 0) return out;
    const short bad = POLLHUP | POLLERR;
    out.readable = readable && (p[0].revents & (POLLIN | bad)) != 0;
    out.writable = writable && (p[0].revents & (POLLOUT | bad)) != 0;
    if (p[1].revents & POLLIN) {
      std::uint64_t v;
      [[maybe_unused]] auto n = ::read(p[1].fd, &v, sizeof v);
      out.woken = true;
    }
    return out;
  }

  void wake(wake_slot slot) noexcept override {
    std::uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(wake_[static_cast<int>(slot)], &one, sizeof one);
  }

  void shutdown() noexcept override { ::shutdown(fd_, SHUT_RDWR); }
  void shutdown_write() noexcept override { ::shutdown(fd_, SHUT_WR); }
  void shutdown_read() noexcept override { ::shutdown(fd_, SHUT_RD); }
  bool can_pass_descriptors() const noexcept override { return true; }
  bool writes_are_syscalls() const noexcept override { return true; }
  const char* name() const noexcept override { return "socket"; }

 private:
  const int fd_;
  int wake_[2] = {-1, -1};
};

}  // namespace

std::unique_ptr<transport> make_socket_transport(int fd) {
  return std::make_unique<socket_transport>(fd);
}

}  // namespace procxy::detail
