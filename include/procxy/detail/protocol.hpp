// procxy/detail/protocol.hpp — the wire protocol, in one place: the frame format, every message
// kind, and one encoder and one decoder per kind (non-template ones in src/protocol.cpp).
//
// Every message is one frame: a 16-byte header, then `size` bytes of body.
//
//   offset 0  u32 size     body bytes that follow (checked against max_message_size)
//   offset 4  u8  kind     message_kind below; unknown kinds are a protocol_error
//   offset 5  u8  flags    0 (reserved, must be 0)
//   offset 6  u16 fds      descriptors that travel with this frame (docs/design.md
//                          "Descriptors"); at most max_descriptors_per_message, and only on
//                          kinds whose values may hold a unique_fd
//   offset 8  u64 id       the request id a reply answers; requests carry their own id
//
// Bodies (codec.hpp encodes the values):
//   hello            u32 protocol version, string build id         each way, id 0, the first frame
//   construct        u64 ctor id, constructor arguments            parent → child, id 0
//   call             u64 method id, arguments                      parent → child
//   reply_value      the result value (nothing for void)           child → parent (and callbacks)
//   reply_error      error_payload (remote_error.hpp)              child → parent (and callbacks)
//   shutdown         empty                                         parent → child
//   invoke           u64 callback id, arguments                    either way; answered by a reply
//   notify           u64 callback id, arguments                    either way; one-way, no reply
//   release          u32 n, n × u64 callback ids                   either way; the sender dropped
//                                                                  its last copy of each
//   event            u64 event id, arguments                       child → parent; one-way
//   subscribe        u64 event id, u8 on (1) / off (0)             parent → child
//   properties       u32 n, n × (u64 property id, u32 len, value)  child → parent; changed values
//   dispose          empty                                         child → parent; "end me"
//
// The hello exchange (docs/design.md "Protocol"): each side writes its hello before anything else
// and checks the peer's, which must be the first frame it reads; a different protocol version or
// build id ends the connection, and the parent fails the spawn with a spawn_error naming both.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "procxy/detail/buffer.hpp"
#include "procxy/detail/codec.hpp"
#include "procxy/error.hpp"

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
  hello = 13,
};
inline constexpr std::uint8_t max_message_kind = 13;

inline bool is_callback_message(message_kind k) noexcept {
  return k == message_kind::invoke || k == message_kind::notify || k == message_kind::release;
}

const char* to_string(message_kind k) noexcept;

struct frame_header {
  std::uint32_t size = 0;
  message_kind kind{};
  std::uint8_t flags = 0;
  std::uint16_t descriptors = 0;  // how many descriptors travel with this frame
  std::uint64_t id = 0;
};
static_assert(sizeof(frame_header) == 16);
inline constexpr std::size_t header_size = sizeof(frame_header);

inline bool is_reply(message_kind k) noexcept {
  return k == message_kind::reply_value || k == message_kind::reply_error;
}

// Whether a frame of kind `k` may carry descriptors (its values may hold a unique_fd).
bool may_carry_descriptors(message_kind k) noexcept;

// The frame decoder. Checks the header at the front of `in` (at least header_size bytes) and
// returns it; throws protocol_error for an unknown kind, reserved bits set, a body larger than
// `max_message_size`, or more than `max_descriptors` descriptors announced (any, for a kind that
// carries none). Whether the body (and its descriptors) has fully arrived is the caller's business.
frame_header check_frame_header(const std::byte* in, std::size_t max_message_size,
                                std::size_t max_descriptors = 0);

// Splits `in` into complete frames: calls `on_frame(header, body_ptr)` for each and returns the
// bytes consumed (a trailing partial frame is left). Throws protocol_error as above; frames before
// the bad one have been delivered.
template <class F>
std::size_t decode_frames(const std::byte* in, std::size_t n, std::size_t max_message_size,
                          F&& on_frame, std::size_t max_descriptors = 0) {
  std::size_t pos = 0;
  while (n - pos >= header_size) {
    frame_header h = check_frame_header(in + pos, max_message_size, max_descriptors);
    if (n - pos - header_size < h.size) break;
    on_frame(h, in + pos + header_size);
    pos += header_size + h.size;
  }
  return pos;
}

// Builds a frame in `out`: header (a request's id is 0 here: the connection assigns it) followed
// by whatever `body` encodes. `ctx`: the connection's callback registry, for bodies that may carry
// functions. The descriptors the values carry are in out.descriptors(), counted in the header; a
// body that fails to encode leaves none (those encoded before the failure are closed).
template <class F>
void build_frame(byte_buffer& out, message_kind kind, std::uint64_t id, F&& body,
                 codec_context* ctx = nullptr) {
  out.clear();
  out.descriptors().clear();
  out.extend(header_size);
  frame_header h;
  try {
    encoder enc(out, ctx);
    body(enc);
    std::size_t n = out.size() - header_size;
    if (n > 0xffffffffu) throw serialization_error("procxy: message body exceeds 4 GiB");
    if (out.descriptors().size() > 0xffffu)
      throw serialization_error("procxy: a message of " + std::to_string(out.descriptors().size()) +
                                " descriptors exceeds the wire limit of 65535");
    h.size = static_cast<std::uint32_t>(n);
  } catch (...) {
    out.descriptors().clear();
    throw;
  }
  h.kind = kind;
  h.id = id;
  h.descriptors = static_cast<std::uint16_t>(out.descriptors().size());
  std::memcpy(out.data(), &h, header_size);
}

// A decoder must consume the whole body: trailing bytes are a protocol_error.
inline void expect_end(decoder& d) {
  if (!d.reader().at_end()) throw protocol_error("procxy: trailing bytes after a reply");
}

// ---- hello -------------------------------------------------------------------------------------

// Bumped whenever a frame or a body changes meaning. 1: before the hello frame existed; 3: the
// header's u16 after the flags counts the descriptors that travel with the frame.
inline constexpr std::uint32_t protocol_version = 3;
// The procxy release and the data model the codec relies on (byte order, sizes of the integer
// types); not the compiler, which the codec does not depend on. "procxy 0.1.0 x86_64 LE LP64".
const std::string& build_id();

struct hello_message {
  std::uint32_t version = 0;
  std::string build;
};
void encode_hello(byte_buffer& out, const hello_message& h);
inline void encode_hello(byte_buffer& out) { encode_hello(out, {protocol_version, build_id()}); }
hello_message decode_hello(std::span<const std::byte> body);  // protocol_error if malformed
// Empty when `peer` speaks our protocol and build; otherwise the text of the error, naming both
// (`peer_name`: "child 1234" or "parent").
std::string hello_mismatch(const hello_message& peer, const std::string& peer_name);

// ---- requests that name a target: construct, call, invoke, notify, event -----------------------

// u64 target (ctor, method, callback or event id), then the values. `ctx` lends the functions
// among them (null where none may appear).
template <class... A>
void encode_request(byte_buffer& out, message_kind kind, std::uint64_t target, codec_context* ctx,
                    const A&... a) {
  build_frame(
      out, kind, 0,
      [&](encoder& e) {
        e.raw(target);
        (e(a), ...);
      },
      ctx);
}
// The target; the values follow in `d`, decoded by whoever knows their types.
inline std::uint64_t decode_target(decoder& d) { return d.raw<std::uint64_t>(); }

// ---- replies -----------------------------------------------------------------------------------

template <class R>
void encode_reply_value(byte_buffer& out, std::uint64_t id, codec_context* ctx, const R& v) {
  build_frame(
      out, message_kind::reply_value, id, [&](encoder& e) { e(v); }, ctx);
}
void encode_reply_void(byte_buffer& out, std::uint64_t id);
// The exception being handled (call inside a catch block).
void encode_reply_error(byte_buffer& out, std::uint64_t id);
template <class R>
R decode_reply_value(decoder& d) {
  if constexpr (std::is_void_v<R>) {
    expect_end(d);
  } else {
    R v = d.template get<R>();
    expect_end(d);
    return v;
  }
}
// The peer's exception, rebuilt (remote_error.hpp); `what` names the call, `peer_pid` the child.
std::exception_ptr decode_reply_error(decoder& d, const char* what, int peer_pid);

// ---- shutdown, dispose: no body ----------------------------------------------------------------

void encode_empty(byte_buffer& out, message_kind kind);
void decode_empty(message_kind kind, std::span<const std::byte> body);  // protocol_error if any

// ---- release -----------------------------------------------------------------------------------

void encode_release(byte_buffer& out, std::span<const std::uint64_t> ids);
std::vector<std::uint64_t> decode_release(std::span<const std::byte> body);

// ---- subscribe ---------------------------------------------------------------------------------

struct subscribe_message {
  std::uint64_t event = 0;
  bool on = false;
};
void encode_subscribe(byte_buffer& out, subscribe_message m);
subscribe_message decode_subscribe(std::span<const std::byte> body);

// ---- properties --------------------------------------------------------------------------------

struct property_value {
  std::uint64_t id = 0;
  std::span<const std::byte> bytes;  // the encoded value (a view into the frame's body)
};
void encode_properties(byte_buffer& out, std::span<const property_value> values);
std::vector<property_value> decode_properties(std::span<const std::byte> body);

}  // namespace procxy::detail
