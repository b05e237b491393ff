// The socket transport: a connected AF_UNIX stream socket plus two eventfds to wake waiters.
// Descriptors travel as SCM_RIGHTS with the first byte of the frame that carries them
// (docs/design.md "Descriptors").
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <system_error>
#include <vector>

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

  std::size_t write_with_descriptors(const std::byte* p, std::size_t n,
                                     std::span<const int> fds) override {
    if (fds.empty()) return write_some(p, n);
    if (fds.size() > max_scm_fds)
      throw serialization_error("procxy: more than " + std::to_string(max_scm_fds) +
                                " descriptors in one message");
    iovec iov{const_cast<std::byte*>(p), n};
    alignas(cmsghdr) char control[CMSG_SPACE(max_scm_fds * sizeof(int))];
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
    for (;;) {
      ssize_t w = ::sendmsg(fd_, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (w >= 0) return static_cast<std::size_t>(w);
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return 0;
      if (errno == EBADF || errno == ETOOMANYREFS || errno == EMSGSIZE)
        throw serialization_error(std::string("procxy: descriptors cannot be sent: ") +
                                  std::strerror(errno));
      throw terminated(std::string("procxy: the connection is closed (") + std::strerror(errno) +
                       ")");
    }
  }

  std::size_t read(std::byte* p, std::size_t n, bool& reset) override {
    reset = false;
    for (;;) {
      // recvmsg, not read: descriptors come with the bytes (close-on-exec as they arrive). The
      // kernel ends a read after the bytes that brought descriptors, so one read brings at most
      // one group, and the frame that announces it starts within the bytes of that read.
      iovec iov{p, n};
      alignas(cmsghdr) char control[CMSG_SPACE(max_scm_fds * sizeof(int))];
      msghdr msg{};
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      msg.msg_control = control;
      msg.msg_controllen = sizeof control;
      ssize_t r = ::recvmsg(fd_, &msg, MSG_CMSG_CLOEXEC);
      if (r >= 0) {
        descriptor_group g;
        for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
          if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
          const std::size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
          for (std::size_t i = 0; i < k; ++i) {
            int d;
            std::memcpy(&d, CMSG_DATA(c) + i * sizeof(int), sizeof d);
            g.fds.emplace_back(d);
          }
        }
        if (msg.msg_flags & MSG_CTRUNC)  // g's descriptors are closed on the way out
          throw protocol_error(
              "procxy: the peer sent more descriptors with one message than could be received "
              "(the rest were discarded by the kernel)");
        const std::uint64_t at = read_total_;
        read_total_ += static_cast<std::uint64_t>(r);
        if (!g.fds.empty()) {
          g.lo = at;
          g.hi = r > 0 ? read_total_ : at + 1;
          received_.push_back(std::move(g));
        }
        return static_cast<std::size_t>(r);
      }
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

  void take_descriptors(std::deque<descriptor_group>& out, bool /*needed*/) override {
    for (auto& g : received_) out.push_back(std::move(g));
    received_.clear();
  }
  const char* name() const noexcept override { return "socket"; }

 private:
  static constexpr std::size_t max_scm_fds = max_descriptors_limit;
  const int fd_;
  // The reading role's: bytes read so far, and the groups read() brought.
  std::uint64_t read_total_ = 0;
  std::vector<descriptor_group> received_;
  int wake_[2] = {-1, -1};
};

}  // namespace

std::unique_ptr<transport> make_socket_transport(int fd) {
  return std::make_unique<socket_transport>(fd);
}

}  // namespace procxy::detail
