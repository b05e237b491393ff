// fuzz/ring_fuzz.cpp — libFuzzer target for the shared-memory transport's reader and writer
// (src/shm_transport.cpp) facing a hostile peer that owns half of the mapping.
//
// Each input is a script. The parent's end of a transport (4 KiB rings) is made over a fresh
// memfd; the fuzzer maps the same memfd a second time and plays the child, one operation per
// input byte (its low 4 bits; the operands follow):
//   0 head  u16   the child's write index := the parent's read position + operand - 2048
//   1 head  u64   the child's write index := operand (anything at all)
//   2 tail  u16   the child's read index of the parent's ring := parent's write count + operand -
//   2048 3 tail  u64   the same, := operand 4 data  u16 u8 n, then n bytes   written into the
//   child's ring at that offset (masked) 5 closed u8   the child's closed flag 6 bell        the
//   parent's wake word bumped (without writing) 7 wants u8    the child's wants word 8 read  u8 the
//   parent reads up to operand + 1 bytes, if a wait that does not block says
//                 there is something to read
//   9 write u8    the parent writes operand + 1 bytes (write_some)
//  10 wait  u8    the parent waits, deadline now, for readable / writable (operand bits 0, 1)
//  11 hangup      the child's socket end closed (the hang-up watcher then marks the peer gone)
//
// Checked (besides ASan/UBSan: nothing outside the mapping or the caller's buffer is touched):
// a read returns at most what was asked; once the transport reported the peer broke the ring,
// every read fails with protocol_error and every write with terminated; only protocol_error and
// terminated ever escape; no call blocks (the driver only reads after a wait said so).
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "fuzz_check.hpp"
#include "procxy/detail/shm_transport.hpp"
#include "procxy/error.hpp"

namespace {

namespace pd = procxy::detail;
namespace shm = procxy::detail::shm;

constexpr std::size_t ring = shm::min_ring;

struct reader {
  const std::uint8_t* p;
  std::size_t n;
  bool more() const { return n > 0; }
  std::uint64_t take(std::size_t bytes) {
    std::uint64_t v = 0;
    for (std::size_t i = 0; i < bytes; ++i) {
      v |= static_cast<std::uint64_t>(n ? *p : 0) << (8 * i);
      if (n) ++p, --n;
    }
    return v;
  }
};

// A transport kept for the whole run, so that the hang-up watcher's thread is not started and
// stopped for every input.
struct keeper {
  std::unique_ptr<pd::transport> t;
  int other = -1;
  keeper() {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) std::abort();
    other = sv[1];
    t = pd::make_shm_transport(sv[0], shm::create(ring), ring, 0, false);
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static keeper keep;
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return 0;
  const int memfd = shm::create(ring);
  const int mine = ::fcntl(memfd, F_DUPFD_CLOEXEC, 0);
  auto* m = static_cast<std::byte*>(
      ::mmap(nullptr, shm::mapping_size(ring), PROT_READ | PROT_WRITE, MAP_SHARED, mine, 0));
  ::close(mine);
  PROCXY_FUZZ_CHECK(m != MAP_FAILED);
  int child_sock = sv[1];
  auto t = pd::make_shm_transport(sv[0], memfd, ring, 0, false);
  auto u64 = [&](std::size_t off) {
    return std::atomic_ref<std::uint64_t>(*reinterpret_cast<std::uint64_t*>(m + off));
  };
  auto u32 = [&](std::size_t off) {
    return std::atomic_ref<std::uint32_t>(*reinterpret_cast<std::uint32_t*>(m + off));
  };

  std::uint64_t parent_read = 0, parent_wrote = 0;
  bool broken = false;
  std::vector<std::byte> buf(300);
  const auto now = [] { return std::chrono::steady_clock::now(); };
  reader in{data, size};
  try {
    while (in.more()) {
      const unsigned op = static_cast<unsigned>(in.take(1)) & 15;
      switch (op) {
        case 0: u64(shm::off_head(1)).store(parent_read + in.take(2) - 2048); break;
        case 1: u64(shm::off_head(1)).store(in.take(8)); break;
        case 2: u64(shm::off_tail(0)).store(parent_wrote + in.take(2) - 2048); break;
        case 3: u64(shm::off_tail(0)).store(in.take(8)); break;
        case 4: {
          const std::size_t off = static_cast<std::size_t>(in.take(2));
          const std::size_t len = static_cast<std::size_t>(in.take(1));
          for (std::size_t i = 0; i < len; ++i)
            m[shm::off_data(1, ring) + ((off + i) & (ring - 1))] =
                static_cast<std::byte>(in.take(1));
          break;
        }
        case 5: u32(shm::off_closed(1)).store(static_cast<std::uint32_t>(in.take(1))); break;
        case 6: u32(shm::off_bell(0)).fetch_add(1); break;
        case 7: u32(shm::off_wants(1)).store(static_cast<std::uint32_t>(in.take(1))); break;
        case 8: {
          const std::size_t want = static_cast<std::size_t>(in.take(1)) + 1;
          auto w = t->wait(true, false, pd::transport::wake_slot::reader, now());
          if (!w.readable) break;
          bool reset = false;
          try {
            const std::size_t got = t->read(buf.data(), want, reset);
            PROCXY_FUZZ_CHECK(got <= want);
            PROCXY_FUZZ_CHECK(!broken);  // a broken ring never yields bytes again
            parent_read += got;
          } catch (const procxy::protocol_error&) {
            broken = true;
          }
          break;
        }
        case 9: {
          const std::size_t n = static_cast<std::size_t>(in.take(1)) + 1;
          try {
            const std::size_t put = t->write_some(buf.data(), n);
            PROCXY_FUZZ_CHECK(put <= n);
            PROCXY_FUZZ_CHECK(!broken);
            parent_wrote += put;
          } catch (const procxy::terminated&) {
          }
          break;
        }
        case 10: {
          const unsigned which = static_cast<unsigned>(in.take(1));
          t->wait((which & 1) != 0, (which & 2) != 0, pd::transport::wake_slot::io, now());
          break;
        }
        case 11:
          if (child_sock >= 0) ::close(child_sock), child_sock = -1;
          break;
        default: break;
      }
    }
  } catch (...) {
    procxy_fuzz::unexpected_exception("ring_fuzz");
  }
  t.reset();
  ::munmap(m, shm::mapping_size(ring));
  if (child_sock >= 0) ::close(child_sock);
  return 0;
}
