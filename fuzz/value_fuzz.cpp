// fuzz/value_fuzz.cpp — libFuzzer target for the value decoder (procxy::detail::decoder,
// include/procxy/detail/codec.hpp) and for decode_remote_error (reply_error payloads).
//
// Input: one selector byte, then the wire bytes. The selector picks a type of value_types.hpp
// (byte % selector_count; the last selector is decode_remote_error). The decoder may reject the
// bytes only with procxy::protocol_error; any other exception, a crash or a sanitizer report is a
// bug. A successful decode is checked by re-encoding (see `check` in value_types.hpp).
//
// Descriptors: every value decodes with a list of four descriptors (duplicates of /dev/null), so
// an index into them may be valid, out of range or used twice; after each input the lowest free
// descriptor number must be what it was (nothing the decoder took or left is leaked).
//
// Memory: the heap the first decode uses at its peak must stay linear in the input,
// bytes_per_input_byte per byte plus fixed_allowance. The decoder checks every count against the
// bytes left before it allocates; this catches what that check misses (an allocation
// multiplied by nesting). The factor fits the types of value_types.hpp, whose decoded form takes
// at most ~16 bytes per wire byte; it is not a bound for every type (a vector of disengaged
// std::optional<std::array<double, 100>> takes sizeof(optional) = 808 bytes per wire byte).
#include <fcntl.h>
#include <malloc.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <new>
#include <optional>
#include <span>
#include <tuple>
#include <utility>
#include <vector>

#include "fuzz_check.hpp"
#include "procxy/detail/buffer.hpp"
#include "procxy/detail/codec.hpp"
#include "procxy/detail/remote_error.hpp"
#include "procxy/error.hpp"
#include "value_types.hpp"

// ---- heap metering: the binary's own global operator new/delete (every non-aligned form) --------

namespace {

std::atomic<bool> g_metering{false};
std::atomic<std::ptrdiff_t> g_live{0};  // signed: blocks allocated before metering may be freed
std::atomic<std::ptrdiff_t> g_peak{0};

[[gnu::noinline]] void* metered_malloc(std::size_t n) {
  void* p = std::malloc(n == 0 ? 1 : n);
  if (p != nullptr && g_metering.load(std::memory_order_relaxed)) {
    const auto size = static_cast<std::ptrdiff_t>(malloc_usable_size(p));
    const auto now = g_live.fetch_add(size, std::memory_order_relaxed) + size;
    auto peak = g_peak.load(std::memory_order_relaxed);
    while (now > peak && !g_peak.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
    }
  }
  return p;
}
[[gnu::noinline]] void metered_free(void* p) noexcept {
  if (p != nullptr && g_metering.load(std::memory_order_relaxed))
    g_live.fetch_sub(static_cast<std::ptrdiff_t>(malloc_usable_size(p)), std::memory_order_relaxed);
  std::free(p);
}

// Meters the heap for its lifetime; peak() is the most allocated at once meanwhile.
class heap_meter {
 public:
  heap_meter() {
    g_live.store(0);
    g_peak.store(0);
    g_metering.store(true);
  }
  ~heap_meter() { g_metering.store(false); }
  heap_meter(const heap_meter&) = delete;
  heap_meter& operator=(const heap_meter&) = delete;
  std::size_t peak() const { return static_cast<std::size_t>(g_peak.load()); }
};

constexpr std::size_t bytes_per_input_byte = 64;
constexpr std::size_t fixed_allowance = std::size_t{256} << 10;

bool heap_within_bounds(std::size_t peak, std::size_t input_size) {
  if (peak <= bytes_per_input_byte * input_size + fixed_allowance) return true;
  std::fprintf(stderr, "value_fuzz: decoding %zu bytes took %zu bytes of heap at once\n",
               input_size, peak);
  return false;
}

}  // namespace

void* operator new(std::size_t n) {
  if (void* p = metered_malloc(n)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) {
  if (void* p = metered_malloc(n)) return p;
  throw std::bad_alloc();
}
void* operator new(std::size_t n, const std::nothrow_t&) noexcept { return metered_malloc(n); }
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept { return metered_malloc(n); }
void operator delete(void* p) noexcept { metered_free(p); }
void operator delete[](void* p) noexcept { metered_free(p); }
void operator delete(void* p, std::size_t) noexcept { metered_free(p); }
void operator delete[](void* p, std::size_t) noexcept { metered_free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { metered_free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { metered_free(p); }

namespace {

namespace pd = procxy::detail;
using bytes = std::span<const std::byte>;
using procxy_fuzz::check;

// The descriptors a message brought: four duplicates of /dev/null.
std::vector<procxy::unique_fd> four_descriptors() {
  static const int null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  std::vector<procxy::unique_fd> v;
  for (int i = 0; i < 4; ++i) v.emplace_back(::fcntl(null, F_DUPFD_CLOEXEC, 0));
  return v;
}

// The lowest free descriptor number: the same after every input, or something leaked.
int lowest_free_descriptor() {
  const int fd = ::fcntl(0, F_DUPFD_CLOEXEC, 0);
  ::close(fd);
  return fd;
}

template <class T>
pd::byte_buffer encode(const T& v) {
  pd::byte_buffer b;
  pd::encoder e(b);
  e(v);
  return b;
}

bool same_bytes(bytes a, bytes b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size()) == 0);
}

// Decodes a T from the front of `in` (trailing bytes are allowed here; the connection rejects
// them separately), then checks the round trip.
template <class Entry>
void fuzz_value(bytes in) {
  using T = typename Entry::type;
  std::optional<T> v;
  std::size_t used = 0;
  auto fds = four_descriptors();
  {
    pd::byte_reader r(in);
    pd::decoder d(r, nullptr, &fds);
    heap_meter meter;
    try {
      v.emplace(d.get<T>());
    } catch (const procxy::protocol_error&) {
      PROCXY_FUZZ_CHECK(heap_within_bounds(meter.peak(), in.size()));
      return;  // the documented rejection
    }
    PROCXY_FUZZ_CHECK(heap_within_bounds(meter.peak(), in.size()));
    used = in.size() - r.remaining();
  }

  // What decoded must encode, and that encoding must decode completely, without error.
  pd::byte_buffer once = encode(*v);
  pd::byte_reader r2(once.view());
  pd::decoder d2(r2, nullptr, &once.descriptors());
  T w = d2.get<T>();
  PROCXY_FUZZ_CHECK(r2.at_end());

  if constexpr (Entry::how == check::unordered) {
    PROCXY_FUZZ_CHECK(w == *v);
  } else {
    pd::byte_buffer twice = encode(w);
    PROCXY_FUZZ_CHECK(same_bytes(twice.view(), once.view()));
    if constexpr (Entry::how == check::exact)
      PROCXY_FUZZ_CHECK(same_bytes(once.view(), in.first(used)));
  }
}

// A reply_error payload: decode_remote_error returns the rebuilt exception (it throws only
// protocol_error). The rebuilt exception must be usable, and what the child side encodes for it
// must decode again.
void fuzz_remote_error(bytes in) {
  pd::byte_reader r(in);
  pd::decoder d(r);
  std::exception_ptr p;
  {
    heap_meter meter;
    try {
      p = pd::decode_remote_error(d, "fuzz::method");
    } catch (const procxy::protocol_error&) {
      PROCXY_FUZZ_CHECK(heap_within_bounds(meter.peak(), in.size()));
      return;
    }
    PROCXY_FUZZ_CHECK(heap_within_bounds(meter.peak(), in.size()));
  }
  PROCXY_FUZZ_CHECK(p != nullptr);

  pd::byte_buffer again;
  try {
    std::rethrow_exception(p);
  } catch (const std::exception& e) {
    PROCXY_FUZZ_CHECK(e.what() != nullptr);
    volatile std::size_t n = std::strlen(e.what());  // reads the whole message (ASan)
    (void)n;
    if (const auto* info = procxy::remote_info_of(e)) {
      volatile std::size_t m = info->type_name().size() + info->method().size();
      (void)m;
    }
    pd::encoder enc(again);
    pd::encode_current_exception(enc);
  }
  pd::byte_reader r2(again.view());
  pd::decoder d2(r2);
  PROCXY_FUZZ_CHECK(pd::decode_remote_error(d2, "fuzz::again") != nullptr);
  PROCXY_FUZZ_CHECK(r2.at_end());
}

using target_fn = void (*)(bytes);

template <std::size_t... I>
constexpr std::array<target_fn, procxy_fuzz::selector_count> make_targets(
    std::index_sequence<I...>) {
  return {&fuzz_value<std::tuple_element_t<I, procxy_fuzz::value_types>>..., &fuzz_remote_error};
}
constexpr auto targets = make_targets(std::make_index_sequence<procxy_fuzz::value_type_count>{});

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const bytes in(reinterpret_cast<const std::byte*>(data) + 1, size - 1);
  static const bool opened = [] {
    four_descriptors();  // opens the /dev/null it duplicates, once; the duplicates are closed
    return true;
  }();
  (void)opened;
  // Measured per input: libFuzzer opens and closes descriptors of its own between inputs (the
  // corpus directory, new units), so a baseline taken once drifts without anything leaking.
  const int lowest = lowest_free_descriptor();
  try {
    targets[data[0] % targets.size()](in);
  } catch (...) {
    procxy_fuzz::unexpected_exception("value_fuzz");
  }
  PROCXY_FUZZ_CHECK(lowest_free_descriptor() == lowest);
  return 0;
}
