// The shared-memory transport (procxy/detail/shm_transport.hpp, docs/design.md "Shared-memory
// transport"): two SPSC byte rings in a sealed memfd, a futex word per side, an adaptive spin,
// and the socket beside them watched for the peer's hang-up by one thread per process.
#include "procxy/detail/shm_transport.hpp"

#include <fcntl.h>
#include <linux/futex.h>
#include <poll.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstring>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <vector>

#include "procxy/error.hpp"

namespace procxy::detail {

namespace shm {

std::size_t ring_size(std::size_t requested) {
  std::size_t r = min_ring;
  while (r < requested && r < max_ring) r <<= 1;
  return r;
}

int create(std::size_t ring_bytes) {
  int fd = ::memfd_create("procxy-ring", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) throw std::system_error(errno, std::system_category(), "procxy: memfd_create");
  auto fail = [fd](const char* what) {
    int e = errno;
    ::close(fd);
    throw std::system_error(e, std::system_category(), what);
  };
  if (::ftruncate(fd, static_cast<off_t>(mapping_size(ring_bytes))) != 0) fail("procxy: ftruncate");
  if (::fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0)
    fail("procxy: sealing the shared memory");
  const std::uint64_t header[2] = {magic, ring_bytes};
  if (::pwrite(fd, header, sizeof header, 0) != static_cast<ssize_t>(sizeof header))
    fail("procxy: writing the shared memory header");
  return fd;
}

bool may_spin() noexcept {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) != 0) return false;
  return CPU_COUNT(&set) >= 2;
}

}  // namespace shm

namespace {

using clock = std::chrono::steady_clock;

// Spin budget bounds: a wait spins at most max_spin_ns before it sleeps on the futex, and at
// least min_spin_ns. The floor is what lets a burst after an idle spell find its way back to
// spinning: the peer's usual turnaround (1-3 µs) falls inside it, while a futex wake-up across
// CPUs (25-50 µs on the small VMs we measure on) would never look short enough to restore it.
constexpr std::int64_t max_spin_ns = 30'000;
constexpr std::int64_t min_spin_ns = 5'000;
// A sleeper wakes at least this often to look at the ring itself, so a peer that writes without
// ringing (a stuck wake word) is noticed, not waited for.
constexpr auto sleep_slice = std::chrono::milliseconds(100);
// A peer that wrote while we slept for it, without waking us, this many times in a row is
// broken (a single miss is a peer preempted between its write and its wake-up).
constexpr int max_missed_rings = 3;
// Wake-ups of our word with no change in either ring and no local reason, in a row: a peer
// that rings without writing (each legitimate ring follows a write or a read).
constexpr int max_empty_rings = 10'000;

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

template <class T>
std::atomic_ref<T> at(std::byte* base, std::size_t off) {
  return std::atomic_ref<T>(*reinterpret_cast<T*>(base + off));
}

long futex(std::uint32_t* word, int op, std::uint32_t val, const timespec* ts) {
  return ::syscall(SYS_futex, word, op, val, ts, nullptr, 0);
}

// Something the hang-up watcher tells when a socket's peer is gone, or (edge-triggered) that
// the peer sent something on it (descriptors: docs/design.md "Descriptors").
struct hangup_target {
  virtual void on_hangup() noexcept = 0;
  virtual void on_readable() noexcept = 0;

 protected:
  ~hangup_target() = default;
};

// One thread per process waits (epoll) for the hang-up of every shared-memory connection's socket
// and tells its transport, which wakes whoever sleeps on the futex. The thread and its two
// descriptors exist only while some shared-memory connection does (a process that no longer
// has proxies holds nothing of procxy's); a forked child (spawn_mode::fork) gets its own
// watcher, since the parent's thread does not exist there.
class hangup_watcher {
 public:
  static hangup_watcher& get() {
    static std::atomic<hangup_watcher*> current{nullptr};
    auto* w = current.load(std::memory_order_acquire);
    if (w && w->pid_ == ::getpid()) return *w;
    // First use in this process. Never destroyed (a transport may be destroyed during static
    // destruction); it holds nothing while no transport exists.
    auto* mine = new hangup_watcher();
    if (current.compare_exchange_strong(w, mine, std::memory_order_acq_rel)) return *mine;
    delete mine;  // another thread of this process was first
    return *w;
  }

  std::uint64_t add(int fd, hangup_target* t) {
    std::lock_guard lk(mu_);
    if (!run_) run_ = start();
    const std::uint64_t id = next_++;
    epoll_event ev{};
    // EPOLLHUP and EPOLLERR are always reported; EPOLLIN, edge-triggered, once per arrival.
    ev.events = EPOLLRDHUP | EPOLLIN | EPOLLET;
    ev.data.u64 = id;
    if (::epoll_ctl(run_->ep, EPOLL_CTL_ADD, fd, &ev) != 0)
      throw std::system_error(errno, std::system_category(), "procxy: epoll_ctl");
    targets_.emplace(id, watched{t, fd});
    return id;
  }

  // After this returns, `t` is never called again. The last one stops the thread.
  void remove(std::uint64_t id, int fd) noexcept {
    std::unique_ptr<running> stop;
    {
      std::lock_guard lk(mu_);
      auto it = targets_.find(id);
      if (it != targets_.end()) {
        if (it->second.fd >= 0 && run_) ::epoll_ctl(run_->ep, EPOLL_CTL_DEL, fd, nullptr);
        targets_.erase(it);
      }
      if (targets_.empty()) stop = std::move(run_);
    }
    if (stop) {
      std::uint64_t one = 1;
      [[maybe_unused]] auto n = ::write(stop->stop, &one, sizeof one);
      stop->thread.join();
    }
  }

 private:
  struct running {
    int ep = -1;
    int stop = -1;  // an eventfd in the epoll set: readable when the thread is to end
    std::thread thread;
    ~running() {
      if (ep >= 0) ::close(ep);
      if (stop >= 0) ::close(stop);
    }
  };

  hangup_watcher() : pid_(::getpid()) {}
  ~hangup_watcher() = default;

  std::unique_ptr<running> start() {
    auto r = std::make_unique<running>();
    r->ep = ::epoll_create1(EPOLL_CLOEXEC);
    if (r->ep < 0) throw std::system_error(errno, std::system_category(), "procxy: epoll_create1");
    r->stop = ::eventfd(0, EFD_CLOEXEC);
    if (r->stop < 0) throw std::system_error(errno, std::system_category(), "procxy: eventfd");
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = 0;  // ids start at 1
    if (::epoll_ctl(r->ep, EPOLL_CTL_ADD, r->stop, &ev) != 0)
      throw std::system_error(errno, std::system_category(), "procxy: epoll_ctl");
    r->thread = std::thread([this, ep = r->ep] { watch(ep); });
    return r;
  }

  void watch(int ep) {
    epoll_event evs[16];
    for (;;) {
      int n = ::epoll_wait(ep, evs, 16, -1);
      if (n < 0) {
        if (errno == EINTR) continue;
        return;
      }
      std::lock_guard lk(mu_);
      for (int i = 0; i < n; ++i) {
        const std::uint64_t id = evs[i].data.u64;  // a copy: epoll_event is packed (x86-64)
        if (id == 0) return;                       // stopped
        auto it = targets_.find(id);
        if (it == targets_.end() || it->second.fd < 0) continue;  // removed (the fd may be reused)
        if ((evs[i].events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) == 0) {
          it->second.target->on_readable();
          continue;
        }
        it->second.target->on_hangup();
        // Level-triggered: a hung-up socket stays "ready"; it has said all it will.
        ::epoll_ctl(ep, EPOLL_CTL_DEL, it->second.fd, nullptr);
        it->second.fd = -1;
      }
    }
  }

  const pid_t pid_;
  std::mutex mu_;
  std::unique_ptr<running> run_;
  std::uint64_t next_ = 1;
  struct watched {
    hangup_target* target;
    int fd;  // -1 once it hung up (no longer in the epoll set)
  };
  std::unordered_map<std::uint64_t, watched> targets_;
};

class shm_transport final : public transport, hangup_target {
 public:
  shm_transport(int sock, std::byte* base, std::size_t ring, int side, bool spin)
      : sock_(sock),
        base_(base),
        ring_(ring),
        mask_(ring - 1),
        side_(side),
        peer_(1 - side),
        out_data_(base + shm::off_data(side, ring)),
        in_data_(base + shm::off_data(1 - side, ring)),
        spin_(spin) {
    watch_id_ = hangup_watcher::get().add(sock_, this);
  }

  ~shm_transport() override {
    unwatch();
    ::close(sock_);
    ::munmap(base_, shm::mapping_size(ring_));
  }

  // ---- writing (one thread at a time: the connection's writing role) ----

  std::size_t write_some(const std::byte* p, std::size_t n) override {
    if (shut_.load(std::memory_order_acquire) || peer_gone_.load(std::memory_order_acquire))
      throw terminated("procxy: the connection is closed");
    std::uint64_t space = out_space();
    if (broken_.load(std::memory_order_acquire))
      throw terminated("procxy: the connection is closed (" + why() + ")");
    if (space == 0 || n == 0) return 0;
    const std::size_t k = static_cast<std::size_t>(std::min<std::uint64_t>(space, n));
    std::uint64_t head = head_.load(std::memory_order_relaxed);
    const std::size_t off = static_cast<std::size_t>(head & mask_);
    const std::size_t first = std::min(k, ring_ - off);
    std::memcpy(out_data_ + off, p, first);
    std::memcpy(out_data_, p + first, k - first);
    head += k;
    head_.store(head, std::memory_order_relaxed);
    at<std::uint64_t>(base_, shm::off_head(side_)).store(head, std::memory_order_release);
    ring_peer(shm::wants_readable);
    return k;
  }

  // Descriptors go over the socket beside the rings, before the frame's first byte is published:
  // one message per frame, its payload the frame's stream position (u64) and the count (u32),
  // the descriptors attached (SCM_RIGHTS). The receiver finds them there when it reads the
  // frame, and checks position and count against the frame's header.
  std::size_t write_with_descriptors(const std::byte* p, std::size_t n,
                                     std::span<const int> fds) override {
    if (fds.empty()) return write_some(p, n);
    if (fds.size() > max_descriptors_limit)
      throw serialization_error("procxy: more than " + std::to_string(max_descriptors_limit) +
                                " descriptors in one message");
    if (shut_.load(std::memory_order_acquire) || peer_gone_.load(std::memory_order_acquire))
      throw terminated("procxy: the connection is closed");
    if (out_space() == 0 || n == 0) return 0;  // nothing sent; tried again with the bytes
    std::byte record[record_size];
    const std::uint64_t pos = head_.load(std::memory_order_relaxed);
    const auto count = static_cast<std::uint32_t>(fds.size());
    std::memcpy(record, &pos, 8);
    std::memcpy(record + 8, &count, 4);
    iovec iov{record, record_size};
    alignas(cmsghdr) char control[CMSG_SPACE(max_descriptors_limit * sizeof(int))];
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
      const ssize_t w = ::sendmsg(sock_, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (w == static_cast<ssize_t>(record_size)) break;
      if (w >= 0)  // a unix stream socket takes a small message whole or not at all
        throw terminated("procxy: the connection is closed (a descriptor message was cut)");
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        // The peer has not taken earlier descriptors yet: wait for the socket, as for a full
        // ring (check() polls it while this is set; the peer rings us when it takes them).
        fd_blocked_.store(true, std::memory_order_release);
        return 0;
      }
      if (errno == EBADF || errno == ETOOMANYREFS)
        throw serialization_error(std::string("procxy: descriptors cannot be sent: ") +
                                  std::strerror(errno));
      throw terminated(std::string("procxy: the connection is closed (") + std::strerror(errno) +
                       ")");
    }
    // Counted before the bytes are published (write_some's release store of the head), so a
    // reader that has read them sees the count and looks at the socket.
    ++records_sent_;
    at<std::uint64_t>(base_, shm::off_records(side_))
        .store(records_sent_, std::memory_order_relaxed);
    return write_some(p, n);  // the ring had room; our writes are the only ones
  }

  void take_descriptors(std::deque<descriptor_group>& out, bool needed) override {
    // One load per read when no descriptors flow: the peer's count of records sent.
    const std::uint64_t sent =
        at<std::uint64_t>(base_, shm::off_records(peer_)).load(std::memory_order_acquire);
    const bool flagged = sock_readable_.load(std::memory_order_relaxed) &&
                         sock_readable_.exchange(false, std::memory_order_acq_rel);
    if (sent == records_taken_ && !flagged && !needed) return;
    bool took = false;
    for (;;) {
      iovec iov{record_ + record_have_, record_size - record_have_};
      alignas(cmsghdr) char control[CMSG_SPACE(max_descriptors_limit * sizeof(int))];
      msghdr msg{};
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      msg.msg_control = control;
      msg.msg_controllen = sizeof control;
      const ssize_t r = ::recvmsg(sock_, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) break;  // EAGAIN: nothing more; 0 or an error: the peer is gone
      std::vector<unique_fd> got;
      for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        const std::size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (std::size_t i = 0; i < k; ++i) {
          int d;
          std::memcpy(&d, CMSG_DATA(c) + i * sizeof(int), sizeof d);
          got.emplace_back(d);
        }
      }
      took = true;
      if (msg.msg_flags & MSG_CTRUNC)
        throw protocol_error(
            "procxy: the peer sent more descriptors with one message than could be received");
      if (!got.empty()) {
        if (record_have_ != 0 || !record_fds_.empty())
          throw protocol_error("procxy: the peer sent descriptors inside a descriptor record");
        record_fds_ = std::move(got);
      }
      record_have_ += static_cast<std::size_t>(r);
      if (record_have_ < record_size) continue;
      record_have_ = 0;
      std::uint64_t pos;
      std::uint32_t count;
      std::memcpy(&pos, record_, 8);
      std::memcpy(&count, record_ + 8, 4);
      std::vector<unique_fd> fds = std::move(record_fds_);
      record_fds_.clear();
      if (count == 0 || count != fds.size())
        throw protocol_error("procxy: a descriptor record announces " + std::to_string(count) +
                             " descriptors and " + std::to_string(fds.size()) + " came with it");
      // The peer writes a frame's bytes after its record, into a ring of ring_ bytes: a record
      // for a position further ahead than that names no frame it could write.
      if (pos > tail_.load(std::memory_order_relaxed) + ring_)
        throw protocol_error("procxy: a descriptor record names position " + std::to_string(pos) +
                             ", past anything the peer can have written");
      ++records_taken_;
      out.push_back(descriptor_group{pos, pos + 1, std::move(fds)});
    }
    if (took) ring_peer(shm::wants_writable);  // a writer waiting for the socket may go on
    if (sent > records_taken_)
      throw protocol_error("procxy: the peer counts " + std::to_string(sent) +
                           " descriptor records and sent " + std::to_string(records_taken_));
  }

  bool descriptors_precede_bytes() const noexcept override { return true; }

  // ---- reading (one thread at a time: the connection's reading role) ----

  std::size_t read(std::byte* p, std::size_t n, bool& reset) override {
    reset = false;
    for (;;) {
      if (broken_.load(std::memory_order_acquire)) throw protocol_error(why());
      if (shut_.load(std::memory_order_acquire) || read_shut_.load(std::memory_order_acquire))
        return 0;
      std::uint64_t avail = in_available();
      if (broken_.load(std::memory_order_acquire)) continue;
      if (avail > 0) return take(p, static_cast<std::size_t>(std::min<std::uint64_t>(avail, n)));
      if (in_closed() || peer_gone_.load(std::memory_order_acquire)) {
        // What the peer wrote before it closed or died is read first.
        if (in_available() > 0 || broken_.load(std::memory_order_acquire)) continue;
        reset = peer_gone_.load(std::memory_order_acquire) && out_unread() > 0;
        return 0;
      }
      wait_for(true, false, -1, time_point::max(), true);
    }
  }

  wait_result wait(bool readable, bool writable, wake_slot slot, time_point deadline) override {
    // Only a reader waiting for data spins (a caller waiting for its reply, an object thread
    // waiting for the next call): the I/O thread's waits are not on the latency path.
    return wait_for(readable, writable, static_cast<int>(slot), deadline,
                    readable && slot == wake_slot::reader);
  }

  void wake(wake_slot slot) noexcept override {
    woken_[static_cast<int>(slot)].store(true, std::memory_order_release);
    ring_local(false);
  }

  void shutdown() noexcept override {
    shut_.store(true, std::memory_order_release);
    at<std::uint32_t>(base_, shm::off_closed(side_)).store(1, std::memory_order_release);
    ring_peer(shm::wants_readable | shm::wants_writable);
    ::shutdown(sock_, SHUT_RDWR);  // the peer's watcher sees the hang-up
    ring_local(true);
    // Nothing is left to watch for. Done here, not only in the destructor, so that a connection
    // kept alive a little longer (by a detached dispatch thread) does not keep the watcher's
    // thread running after terminate() returned.
    unwatch();
  }

  void shutdown_write() noexcept override {
    at<std::uint32_t>(base_, shm::off_closed(side_)).store(1, std::memory_order_release);
    ring_peer(shm::wants_readable);
  }

  void shutdown_read() noexcept override {
    read_shut_.store(true, std::memory_order_release);
    ring_local(true);
  }

  bool can_pass_descriptors() const noexcept override { return true; }

  bool writes_are_syscalls() const noexcept override { return false; }
  const char* name() const noexcept override { return "shared_memory"; }

  void on_hangup() noexcept override {
    peer_gone_.store(true, std::memory_order_release);
    ring_local(true);
  }

  // The peer sent descriptors: the reader takes them at its next look (take_descriptors), so
  // that descriptors no frame announces are found even if no frame asks for them.
  void on_readable() noexcept override { sock_readable_.store(true, std::memory_order_release); }

 private:
  static bool any(const wait_result& r) { return r.readable || r.writable || r.woken; }

  void unwatch() noexcept {
    if (auto id = watch_id_.exchange(0)) hangup_watcher::get().remove(id, sock_);
  }

  // slot -1: read()'s own wait, which no wake slot interrupts.
  wait_result wait_for(bool readable, bool writable, int slot, time_point deadline, bool spinning) {
    wait_result r = check(readable, writable, slot);
    if (any(r)) return r;
    if (spinning && spin_) {
      r = spin(readable, writable, slot, deadline);
      if (any(r)) return r;
    }
    for (;;) {
      r = sleep_until(readable, writable, slot, deadline);
      if (any(r) || clock::now() >= deadline) return r;
    }
  }

  std::string why() {
    std::lock_guard lk(why_mu_);
    return why_;
  }

  // The peer broke the ring's rules: remember the first reason; every later read fails with it.
  void broke(std::string what) noexcept {
    {
      std::lock_guard lk(why_mu_);
      if (!broken_.load(std::memory_order_relaxed))
        why_ = "procxy: the peer broke the shared-memory ring: " + what;
      broken_.store(true, std::memory_order_release);
    }
    ring_local(true);
  }

  // Bytes the peer has written that we have not read, after checking what it published: its
  // write index never moves backwards and never runs more than a ring ahead of our read index.
  std::uint64_t in_available() noexcept {
    // `seen` first: it was raised by a thread that loaded the peer's index earlier, so (acquire /
    // release on `seen`) our load of the index cannot legitimately return less.
    const std::uint64_t seen = in_head_seen_.load(std::memory_order_acquire);
    const std::uint64_t h =
        at<std::uint64_t>(base_, shm::off_head(peer_)).load(std::memory_order_acquire);
    const std::uint64_t t = tail_.load(std::memory_order_relaxed);
    if (h < seen) {
      broke("its write index moved backwards (" + std::to_string(seen) + " -> " +
            std::to_string(h) + ")");
      return 0;
    }
    if (h - t > ring_) {
      broke("its write index is " + std::to_string(h - t) +
            " bytes past our read index, in a ring of " + std::to_string(ring_));
      return 0;
    }
    raise(in_head_seen_, h);
    return h - t;
  }

  // Several threads look at the rings at once (a writer, waiters): what one has seen only grows.
  static void raise(std::atomic<std::uint64_t>& seen, std::uint64_t v) noexcept {
    std::uint64_t cur = seen.load(std::memory_order_relaxed);
    while (cur < v && !seen.compare_exchange_weak(cur, v, std::memory_order_release,
                                                  std::memory_order_relaxed)) {
    }
  }

  // Room in our ring, after checking the peer's read index: it never moves backwards and never
  // passes what we wrote.
  std::uint64_t out_space() noexcept {
    const std::uint64_t seen = out_tail_seen_.load(std::memory_order_acquire);
    const std::uint64_t t =
        at<std::uint64_t>(base_, shm::off_tail(side_)).load(std::memory_order_acquire);
    // Loaded after the peer's index: everything the peer can have read was written before it.
    const std::uint64_t h = head_.load(std::memory_order_relaxed);
    if (t < seen) {
      broke("its read index moved backwards (" + std::to_string(seen) + " -> " + std::to_string(t) +
            ")");
      return 0;
    }
    if (t > h) {
      broke("its read index " + std::to_string(t) + " is past what we wrote (" + std::to_string(h) +
            ")");
      return 0;
    }
    raise(out_tail_seen_, t);
    return ring_ - (h - t);
  }

  std::uint64_t out_unread() noexcept {
    const std::uint64_t t =
        at<std::uint64_t>(base_, shm::off_tail(side_)).load(std::memory_order_acquire);
    const std::uint64_t h = head_.load(std::memory_order_relaxed);
    return t <= h ? h - t : 0;
  }

  bool in_closed() noexcept {
    return at<std::uint32_t>(base_, shm::off_closed(peer_)).load(std::memory_order_acquire) != 0;
  }

  std::size_t take(std::byte* p, std::size_t k) noexcept {
    std::uint64_t t = tail_.load(std::memory_order_relaxed);
    const std::size_t off = static_cast<std::size_t>(t & mask_);
    const std::size_t first = std::min(k, ring_ - off);
    std::memcpy(p, in_data_ + off, first);
    std::memcpy(p + first, in_data_, k - first);
    t += k;
    tail_.store(t, std::memory_order_relaxed);
    at<std::uint64_t>(base_, shm::off_tail(peer_)).store(t, std::memory_order_release);
    ring_peer(shm::wants_writable);
    return k;
  }

  wait_result check(bool readable, bool writable, int slot) noexcept {
    wait_result r;
    const bool done =
        shut_.load(std::memory_order_acquire) || peer_gone_.load(std::memory_order_acquire);
    if (readable)
      r.readable =
          done || read_shut_.load(std::memory_order_acquire) || in_available() > 0 || in_closed();
    // The peer's read index is checked on every look, not only when this side writes: a peer
    // that breaks it is caught while we wait for its reply.
    bool room = out_space() > 0;
    if (room && writable && fd_blocked_.load(std::memory_order_acquire)) {
      // The last descriptor message did not fit in the socket: writable when it does.
      pollfd s{sock_, POLLOUT, 0};
      if (::poll(&s, 1, 0) > 0 && (s.revents & (POLLOUT | POLLHUP | POLLERR)) != 0)
        fd_blocked_.store(false, std::memory_order_release);
      else
        room = false;
    }
    if (writable) r.writable = done || room || broken_.load(std::memory_order_acquire);
    if (readable) r.readable = r.readable || broken_.load(std::memory_order_acquire);
    if (slot >= 0 && woken_[slot].load(std::memory_order_acquire))
      r.woken = woken_[slot].exchange(false, std::memory_order_acq_rel);
    return r;
  }

  // Spins up to the current budget. The budget adapts: a spin that found the data doubles it, a
  // wait the spin would have covered (the data came within max_spin_ns) puts it back to the
  // maximum, a spin that found nothing halves it down to min_spin_ns, so an idle peer costs a
  // few microseconds of spinning per wait, and there are few waits while it is idle.
  wait_result spin(bool readable, bool writable, int slot, time_point deadline) {
    const std::int64_t budget = spin_ns_.load(std::memory_order_relaxed);
    if (budget <= 0) return {};
    const auto start = clock::now();
    const auto until = std::min(deadline, start + std::chrono::nanoseconds(budget));
    for (unsigned i = 1;; ++i) {
      cpu_relax();
      wait_result r = check(readable, writable, slot);
      if (any(r)) {
        spin_ns_.store(std::min(max_spin_ns, budget * 2), std::memory_order_relaxed);
        return r;
      }
      if ((i & 15) == 0 && clock::now() >= until) break;
    }
    spin_ns_.store(std::max(min_spin_ns, budget / 2), std::memory_order_relaxed);
    return {};
  }

  // Sleeps on our futex word until the peer or a local thread rings it, or the deadline (at most
  // sleep_slice). Publishes what it sleeps for, so that the peer rings only when it must.
  wait_result sleep_until(bool readable, bool writable, int slot, time_point deadline) {
    std::uint32_t* bell = reinterpret_cast<std::uint32_t*>(base_ + shm::off_bell(side_));
    const std::uint32_t seq = std::atomic_ref<std::uint32_t>(*bell).load(std::memory_order_acquire);
    const std::uint64_t in_head0 =
        at<std::uint64_t>(base_, shm::off_head(peer_)).load(std::memory_order_relaxed);
    const std::uint64_t out_tail0 =
        at<std::uint64_t>(base_, shm::off_tail(side_)).load(std::memory_order_relaxed);
    const std::uint32_t local0 = local_rings_.load(std::memory_order_relaxed);
    enlist(readable, writable, +1);
    shm::full_fence();
    wait_result r = check(readable, writable, slot);
    if (any(r)) {
      enlist(readable, writable, -1);
      return r;
    }
    const auto now = clock::now();
    const auto until = std::min(deadline, now + sleep_slice);
    if (until <= now) {
      enlist(readable, writable, -1);
      return r;
    }
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                        std::max(until - now, clock::duration{0}))
                        .count();
    timespec ts{static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)};
    const long rc = futex(bell, FUTEX_WAIT, seq, &ts);
    const int err = rc == 0 ? 0 : errno;
    enlist(readable, writable, -1);
    const auto slept = clock::now() - now;
    if (spin_ && readable && slept < std::chrono::nanoseconds(max_spin_ns))
      spin_ns_.store(max_spin_ns, std::memory_order_relaxed);  // a spin would have caught it

    // Did the peer keep the wake-up protocol? Each of its writes and reads that we slept for
    // must ring our word; each ring must follow a write or a read.
    const std::uint64_t in_head1 =
        at<std::uint64_t>(base_, shm::off_head(peer_)).load(std::memory_order_relaxed);
    const std::uint64_t out_tail1 =
        at<std::uint64_t>(base_, shm::off_tail(side_)).load(std::memory_order_relaxed);
    const bool progress =
        (readable && in_head1 != in_head0) || (writable && out_tail1 != out_tail0);
    const bool any_change = in_head1 != in_head0 || out_tail1 != out_tail0 ||
                            local_rings_.load(std::memory_order_relaxed) != local0;
    const bool rung = std::atomic_ref<std::uint32_t>(*bell).load(std::memory_order_acquire) != seq;
    if (err == ETIMEDOUT && !rung && progress) {
      if (++missed_rings_ >= max_missed_rings)
        broke("it wrote to the ring " + std::to_string(max_missed_rings) +
              " times in a row without waking us (its wake word is stuck)");
    } else if (rung || progress) {
      missed_rings_ = 0;
    }
    if (rung && !any_change) {
      if (++empty_rings_ >= max_empty_rings)
        broke("it rang our wake word " + std::to_string(max_empty_rings) +
              " times without writing or reading");
    } else if (any_change) {
      empty_rings_ = 0;
    }
    return check(readable, writable, slot);
  }

  // Counts the sleepers of this side and publishes, in the shared word the peer reads after each
  // write and read, what they sleep for.
  void enlist(bool readable, bool writable, int d) {
    std::lock_guard lk(sleep_mu_);
    if (readable) sleep_readers_ += d;
    if (writable) sleep_writers_ += d;
    const std::uint32_t wants = (sleep_readers_ > 0 ? shm::wants_readable : 0u) |
                                (sleep_writers_ > 0 ? shm::wants_writable : 0u);
    at<std::uint32_t>(base_, shm::off_wants(side_)).store(wants, std::memory_order_relaxed);
    sleepers_.fetch_add(d, std::memory_order_seq_cst);
  }

  // After a write (or a read): wakes the peer if it sleeps for that. The fence orders our index
  // store before the load of its wants word, as its fence orders its wants store before its
  // load of our index (a Dekker pair: one of the two sees the other).
  void ring_peer(std::uint32_t what) noexcept {
    shm::full_fence();
    if ((at<std::uint32_t>(base_, shm::off_wants(peer_)).load(std::memory_order_relaxed) & what) ==
        0)
      return;
    auto* bell = reinterpret_cast<std::uint32_t*>(base_ + shm::off_bell(peer_));
    std::atomic_ref<std::uint32_t>(*bell).fetch_add(1, std::memory_order_release);
    futex(bell, FUTEX_WAKE, INT_MAX, nullptr);
  }

  // Wakes this side's sleepers (a local wake slot, shutdown, the peer's hang-up, a broken ring).
  void ring_local(bool always) noexcept {
    local_rings_.fetch_add(1, std::memory_order_relaxed);
    shm::full_fence();
    if (!always && sleepers_.load(std::memory_order_relaxed) == 0) return;
    auto* bell = reinterpret_cast<std::uint32_t*>(base_ + shm::off_bell(side_));
    std::atomic_ref<std::uint32_t>(*bell).fetch_add(1, std::memory_order_release);
    futex(bell, FUTEX_WAKE, INT_MAX, nullptr);
  }

  static constexpr std::size_t record_size = 12;  // u64 position, u32 count
  const int sock_;
  std::byte* const base_;
  const std::size_t ring_, mask_;
  const int side_, peer_;
  std::byte* const out_data_;
  std::byte* const in_data_;
  const bool spin_;
  std::atomic<std::uint64_t> watch_id_{0};

  // Our own indices are kept here, never read back from the shared mapping.
  std::atomic<std::uint64_t> head_{0};           // bytes written (writing role)
  std::atomic<std::uint64_t> out_tail_seen_{0};  // the peer's read index, last checked
  std::atomic<std::uint64_t> tail_{0};           // bytes read (reading role)
  std::atomic<std::uint64_t> in_head_seen_{0};   // the peer's write index, last checked

  std::atomic<bool> shut_{false}, peer_gone_{false}, broken_{false};
  std::atomic<bool> read_shut_{false};  // shutdown_read(): every read is EOF from now on
  // Descriptors: the watcher saw the peer send some; a descriptor message did not fit in the
  // socket; the record being received (the reading role's).
  std::atomic<bool> sock_readable_{false}, fd_blocked_{false};
  std::byte record_[record_size];
  std::size_t record_have_ = 0;
  std::vector<unique_fd> record_fds_;
  std::uint64_t records_taken_ = 0;  // the reading role's
  std::uint64_t records_sent_ = 0;   // the writing role's
  std::mutex why_mu_;
  std::string why_;
  std::atomic<bool> woken_[2] = {false, false};
  std::atomic<std::uint32_t> local_rings_{0};
  std::atomic<int> sleepers_{0};
  std::mutex sleep_mu_;
  int sleep_readers_ = 0, sleep_writers_ = 0;
  std::atomic<std::int64_t> spin_ns_{max_spin_ns};
  // Touched by the sleeping threads only; a rough count is enough.
  std::atomic<int> missed_rings_{0}, empty_rings_{0};
};

}  // namespace

std::unique_ptr<transport> make_shm_transport(int socket_fd, int memfd, std::size_t ring_bytes,
                                              int side, bool spin) {
  struct closer {
    int fd;
    ~closer() { ::close(fd); }
  } close_memfd{memfd};
  auto fail = [&](const std::string& what) {
    ::close(socket_fd);
    throw protocol_error("procxy: shared-memory transport: " + what);
  };
  if (ring_bytes < shm::min_ring || ring_bytes > shm::max_ring ||
      (ring_bytes & (ring_bytes - 1)) != 0)
    fail("bad ring size " + std::to_string(ring_bytes));
  struct stat st {};
  if (::fstat(memfd, &st) != 0 ||
      static_cast<std::size_t>(st.st_size) != shm::mapping_size(ring_bytes))
    fail("the shared memory is not " + std::to_string(shm::mapping_size(ring_bytes)) + " bytes");
  void* m =
      ::mmap(nullptr, shm::mapping_size(ring_bytes), PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
  if (m == MAP_FAILED) fail(std::string("mmap: ") + std::strerror(errno));
  auto* base = static_cast<std::byte*>(m);
  if (at<std::uint64_t>(base, shm::off_magic).load(std::memory_order_acquire) != shm::magic ||
      at<std::uint64_t>(base, shm::off_ring).load(std::memory_order_acquire) != ring_bytes) {
    ::munmap(m, shm::mapping_size(ring_bytes));
    fail("bad header");
  }
  try {
    return std::make_unique<shm_transport>(socket_fd, base, ring_bytes, side, spin);
  } catch (...) {
    ::munmap(m, shm::mapping_size(ring_bytes));
    ::close(socket_fd);
    throw;
  }
}

}  // namespace procxy::detail
