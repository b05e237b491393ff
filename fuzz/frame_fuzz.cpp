// fuzz/frame_fuzz.cpp — libFuzzer target for the frame decoder: check_frame_header and
// decode_frames (include/procxy/detail/protocol.hpp, src/connection.cpp).
//
// Input: one control byte, then the byte stream as it would arrive on a channel. Control bits
// 0-1 pick max_message_size (64, 4 KiB, 256 MiB — the default —, or 0: empty bodies only); bits
// 2-7 pick a chunk size of 1..64 bytes for the streaming pass. The same bits 0-1 pick the most
// descriptors a frame may announce (2, 64, 253, 0).
//
// Checked: the decoder fails only with procxy::protocol_error; it agrees with an independent
// reading of the header format in protocol.hpp (same frames, same headers, error exactly when that
// reading finds a bad header); consumed <= n and every body lies inside the input; feeding the
// same stream in chunks, keeping the unconsumed rest as connection::extract_frames does, yields
// the same frames and the same verdict.
#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "fuzz_check.hpp"
#include "procxy/detail/protocol.hpp"
#include "procxy/error.hpp"

namespace {

namespace pd = procxy::detail;

constexpr std::array<std::size_t, 4> max_sizes = {64, 4096, std::size_t{256} << 20, 0};
constexpr std::array<std::size_t, 4> max_fds = {2, 64, 253, 0};

// The kinds whose values may hold a descriptor (protocol.hpp): construct, call, reply_value,
// invoke, notify, event.
bool carries_descriptors(unsigned kind) {
  return kind == 1 || kind == 2 || kind == 3 || kind == 6 || kind == 7 || kind == 9;
}

struct decoded_frame {
  pd::frame_header header;
  std::vector<std::byte> body;
};
struct outcome {
  std::vector<decoded_frame> frames;
  std::size_t consumed = 0;  // meaningful when !failed
  bool failed = false;       // a bad header was found
};

std::uint64_t little_endian(const std::byte* p, std::size_t n) {
  std::uint64_t v = 0;
  for (std::size_t i = n; i-- > 0;) v = (v << 8) | static_cast<std::uint64_t>(p[i]);
  return v;
}

bool same_header(const pd::frame_header& a, const pd::frame_header& b) {
  return a.size == b.size && a.kind == b.kind && a.flags == b.flags &&
         a.descriptors == b.descriptors && a.id == b.id;
}

bool same_frames(const std::vector<decoded_frame>& a, const std::vector<decoded_frame>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (!same_header(a[i].header, b[i].header) || a[i].body != b[i].body) return false;
  return true;
}

// The header format, read independently of procxy's code (the oracle).
outcome reference(const std::byte* in, std::size_t n, std::size_t max, std::size_t fds) {
  outcome o;
  std::size_t pos = 0;
  while (n - pos >= 16) {
    const std::byte* h = in + pos;
    pd::frame_header fh;
    fh.size = static_cast<std::uint32_t>(little_endian(h, 4));
    fh.kind = static_cast<pd::message_kind>(h[4]);
    fh.flags = static_cast<std::uint8_t>(h[5]);
    fh.descriptors = static_cast<std::uint16_t>(little_endian(h + 6, 2));
    fh.id = little_endian(h + 8, 8);
    const auto kind = static_cast<unsigned>(h[4]);
    if (kind < 1 || kind > 13 || fh.flags != 0 || fh.size > max ||
        (fh.descriptors != 0 && (!carries_descriptors(kind) || fh.descriptors > fds))) {
      o.failed = true;
      return o;
    }
    if (n - pos - 16 < fh.size) break;
    o.frames.push_back({fh, std::vector<std::byte>(h + 16, h + 16 + fh.size)});
    pos += 16 + fh.size;
  }
  o.consumed = pos;
  return o;
}

// decode_frames over the whole input at once, checking each delivery against the input bounds.
outcome whole(const std::byte* in, std::size_t n, std::size_t max, std::size_t fds) {
  outcome o;
  const auto begin = reinterpret_cast<std::uintptr_t>(in);
  std::size_t expected_offset = 0;  // where the next frame's header must start
  try {
    o.consumed = pd::decode_frames(
        in, n, max,
        [&](const pd::frame_header& h, const std::byte* body) {
          const auto at = reinterpret_cast<std::uintptr_t>(body);
          PROCXY_FUZZ_CHECK(at >= begin && at - begin <= n);
          const std::size_t offset = at - begin;
          PROCXY_FUZZ_CHECK(offset == expected_offset + pd::header_size);
          PROCXY_FUZZ_CHECK(h.size <= n - offset);  // the body lies inside the input
          PROCXY_FUZZ_CHECK(h.size <= max);
          const auto kind = static_cast<std::uint8_t>(h.kind);
          PROCXY_FUZZ_CHECK(kind >= 1 && kind <= pd::max_message_kind);
          PROCXY_FUZZ_CHECK(h.flags == 0 && h.descriptors <= fds);
          PROCXY_FUZZ_CHECK(h.descriptors == 0 || pd::may_carry_descriptors(h.kind));
          o.frames.push_back(
              {h, std::vector<std::byte>(body, body + h.size)});  // touches every byte
          expected_offset = offset + h.size;
        },
        fds);
  } catch (const procxy::protocol_error&) {
    o.failed = true;
    return o;
  }
  PROCXY_FUZZ_CHECK(o.consumed <= n);
  PROCXY_FUZZ_CHECK(o.consumed == expected_offset);
  return o;
}

// The same stream arriving `chunk` bytes at a time into a buffer that keeps what was not consumed.
outcome streamed(const std::byte* in, std::size_t n, std::size_t max, std::size_t fds,
                 std::size_t chunk) {
  outcome o;
  std::vector<std::byte> buf;
  std::size_t total = 0;  // bytes consumed over all calls
  for (std::size_t pos = 0; pos < n;) {
    const std::size_t k = std::min(chunk, n - pos);
    buf.insert(buf.end(), in + pos, in + pos + k);
    pos += k;
    std::size_t used = 0;
    try {
      used = pd::decode_frames(
          buf.data(), buf.size(), max,
          [&](const pd::frame_header& h, const std::byte* body) {
            o.frames.push_back({h, std::vector<std::byte>(body, body + h.size)});
          },
          fds);
    } catch (const procxy::protocol_error&) {
      o.failed = true;
      return o;
    }
    PROCXY_FUZZ_CHECK(used <= buf.size());
    buf.erase(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(used));
    total += used;
  }
  o.consumed = total;
  return o;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::size_t max = max_sizes[data[0] & 3u];
  const std::size_t fds = max_fds[data[0] & 3u];
  const std::size_t chunk = (data[0] >> 2) + std::size_t{1};
  const auto* in = reinterpret_cast<const std::byte*>(data) + 1;
  const std::size_t n = size - 1;
  try {
    const outcome expected = reference(in, n, max, fds);

    // check_frame_header alone, on the first header.
    if (n >= pd::header_size) {
      bool failed = false;
      pd::frame_header h{};
      try {
        h = pd::check_frame_header(in, max, fds);
      } catch (const procxy::protocol_error&) {
        failed = true;
      }
      const bool first_bad = expected.failed && expected.frames.empty();
      PROCXY_FUZZ_CHECK(failed == first_bad);
      if (!failed && !expected.frames.empty())
        PROCXY_FUZZ_CHECK(same_header(h, expected.frames.front().header));
    }

    const outcome got = whole(in, n, max, fds);
    PROCXY_FUZZ_CHECK(got.failed == expected.failed);
    PROCXY_FUZZ_CHECK(same_frames(got.frames, expected.frames));
    if (!got.failed) {
      PROCXY_FUZZ_CHECK(got.consumed == expected.consumed);
      // What is left is a partial frame: less than a header, or a header whose body is cut.
      const std::size_t rest = n - got.consumed;
      if (rest >= pd::header_size)
        PROCXY_FUZZ_CHECK(little_endian(in + got.consumed, 4) > rest - pd::header_size);
    }

    const outcome chunks = streamed(in, n, max, fds, chunk);
    PROCXY_FUZZ_CHECK(chunks.failed == expected.failed);
    PROCXY_FUZZ_CHECK(same_frames(chunks.frames, expected.frames));
    if (!chunks.failed) PROCXY_FUZZ_CHECK(chunks.consumed == expected.consumed);
  } catch (...) {
    procxy_fuzz::unexpected_exception("frame_fuzz");
  }
  return 0;
}
