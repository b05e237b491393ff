// procxy/detail/wire.hpp — the frame format shared by both ends.
//
// Every message is one frame: a 16-byte header, then `size` bytes of body.
//
//   offset 0  u32 size     body bytes that follow (checked against max_message_size)
//   offset 4  u8  kind     message_kind below; unknown kinds are a protocol_error
//   offset 5  u8  flags    0 (reserved, must be 0)
//   offset 6  u16 reserved 0 (must be 0)
//   offset 8  u64 id       the request id a reply answers; requests carry their own id
//
// Bodies (codec.hpp encodes the values):
//   construct        u64 ctor id, constructor arguments            parent → child, id 0, first frame
//   call             u64 method id, arguments                      parent → child
//   reply_value      the result value (nothing for void)           child → parent
//   reply_error      error_payload (errors.hpp)                    child → parent
//   shutdown         empty                                         parent → child
//   invoke           u64 callback id, arguments                    either way; answered by a reply
//   notify           u64 callback id, arguments                    either way; one-way, no reply
//   release          u32 n, n × u64 callback ids                   either way; the sender dropped
//                                                                  its last copy of each
//   event            u64 event id, arguments                       child → parent; one-way
//   subscribe        u64 event id, u8 on (1) / off (0)             parent → child
//   properties       u32 n, n × (u64 property id, u32 len, value)  child → parent; changed values
//   dispose          empty                                         child → parent; "end me"
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

namespace procxy::detail {

enum class message_kind : std::uint8_t {
  construct = 1,
  call = 2,
  reply_value = 3,
  reply_error = 4,
  shutdown = 5,
  invoke = 6,
  notify = 7,
  release = 8,
  event = 9,
  subscribe = 10,
  properties = 11,
  dispose = 12,
};
inline constexpr std::uint8_t max_message_kind = 12;

inline bool is_callback_message(message_kind k) noexcept {
  return k == message_kind::invoke || k == message_kind::notify || k == message_kind::release;
}

const char* to_string(message_kind k) noexcept;

struct frame_header {
  std::uint32_t size = 0;
  message_kind kind{};
  std::uint8_t flags = 0;
  std::uint16_t reserved = 0;
  std::uint64_t id = 0;
};
static_assert(sizeof(frame_header) == 16);
inline constexpr std::size_t header_size = sizeof(frame_header);

inline bool is_reply(message_kind k) noexcept {
  return k == message_kind::reply_value || k == message_kind::reply_error;
}

// The frame decoder. Checks the header at the front of `in` (at least header_size bytes) and
// returns it; throws protocol_error for an unknown kind, reserved bits set, or a body larger than
// `max_message_size`. Whether the body has fully arrived is the caller's business.
frame_header check_frame_header(const std::byte* in, std::size_t max_message_size);

// Splits `in` into complete frames: calls `on_frame(header, body_ptr)` for each and returns the
// bytes consumed (a trailing partial frame is left). Throws protocol_error as above; frames before
// the bad one have been delivered.
template <class F>
std::size_t decode_frames(const std::byte* in, std::size_t n, std::size_t max_message_size, F&& on_frame) {
  std::size_t pos = 0;
  while (n - pos >= header_size) {
    frame_header h = check_frame_header(in + pos, max_message_size);
    if (n - pos - header_size < h.size) break;
    on_frame(h, in + pos + header_size);
    pos += header_size + h.size;
  }
  return pos;
}

}  // namespace procxy::detail
