// procxy/detail/shm_transport.hpp — the shared-memory transport: two single-producer/single-
// consumer byte rings in a memfd both processes map, a futex word per side to sleep on, and the
// socket kept beside them for liveness (docs/design.md "Shared-memory transport").
//
// The layout is here, not hidden in the .cpp, because the hostile-peer tests and the ring fuzzer
// play the other side by writing these words directly.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "procxy/detail/transport.hpp"

namespace procxy::detail::shm {

// Side 0 is the parent, side 1 the child. Ring d carries bytes written by side d: ring 0 goes
// parent → child, ring 1 child → parent.
inline constexpr std::uint64_t magic = 0x314d485359584f52ULL;  // "ROXYSHM1", little-endian
inline constexpr std::size_t line = 64;                        // one cache line per writer
inline constexpr std::size_t control_bytes = 4096;

// Offsets in the control block (bytes). Every word is written by exactly one side.
inline constexpr std::size_t off_magic = 0;  // u64, parent, once
inline constexpr std::size_t off_ring = 8;   // u64 ring size, parent, once
inline constexpr std::size_t off_bell(int side) { return (1 + side) * line; }  // u32 futex word
inline constexpr std::size_t off_wants(int side) {
  return (3 + side) * line;
}  // u32: what side sleeps for
inline constexpr std::size_t off_head(int ring) { return (5 + 2 * ring) * line; }  // u64, producer
inline constexpr std::size_t off_closed(int ring) {
  return (5 + 2 * ring) * line + 8;
}  // u32, producer
inline constexpr std::size_t off_tail(int ring) { return (6 + 2 * ring) * line; }  // u64, consumer
// u64, producer: descriptor records it has sent on the socket (docs/design.md "Descriptors"),
// raised before the frame's bytes are published, so a reader that read them knows to look.
inline constexpr std::size_t off_records(int ring) { return (5 + 2 * ring) * line + 16; }
inline constexpr std::size_t off_data(int ring, std::size_t ring_bytes) {
  return control_bytes + static_cast<std::size_t>(ring) * ring_bytes;
}
inline constexpr std::uint32_t wants_readable = 1;  // asleep until the peer writes
inline constexpr std::uint32_t wants_writable = 2;  // asleep until the peer frees room

inline constexpr std::size_t min_ring = 4096;
inline constexpr std::size_t max_ring = std::size_t{1} << 30;
inline constexpr std::size_t default_ring = std::size_t{256} << 10;

// The full barrier of the wake-up protocol's Dekker pair (docs/design.md). ThreadSanitizer does
// not model fences (GCC warns, -Wtsan); under it a sequentially consistent read-modify-write,
// which is a full barrier on the CPUs procxy runs on (x86-64 LOCK, AArch64 LSE), stands in.
inline void full_fence() noexcept {
#if defined(__SANITIZE_THREAD__)
  static std::atomic<int> barrier{0};
  barrier.fetch_add(0, std::memory_order_seq_cst);
#else
  std::atomic_thread_fence(std::memory_order_seq_cst);
#endif
}

// The ring size used for a request: a power of two in [min_ring, max_ring].
std::size_t ring_size(std::size_t requested);
inline constexpr std::size_t mapping_size(std::size_t ring_bytes) {
  return control_bytes + 2 * ring_bytes;
}

// The parent's part: a memfd (close-on-exec) of mapping_size(ring) bytes with the header
// written, sealed against shrinking and growing (a child cannot truncate it under the parent).
// Throws std::system_error when memfd_create, ftruncate or the seals fail.
int create(std::size_t ring_bytes);

// Whether this process may spin while it waits: another CPU is available to it
// (sched_getaffinity). A spin on one CPU only delays the peer it waits for.
bool may_spin() noexcept;

}  // namespace procxy::detail::shm

namespace procxy::detail {

// A transport over the memfd `memfd` (from shm::create; closed here after mapping) and the
// connected socket `socket_fd` (owned; carries no bytes, only the peer's hang-up). `side`: 0 in
// the parent, 1 in the child. Checks the header (magic, ring size, the memfd's size); throws
// protocol_error when it does not match. `spin`: whether waits may spin before sleeping
// (normally shm::may_spin()).
std::unique_ptr<transport> make_shm_transport(int socket_fd, int memfd, std::size_t ring_bytes,
                                              int side, bool spin);

}  // namespace procxy::detail
