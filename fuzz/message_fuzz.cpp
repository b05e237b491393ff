// fuzz/message_fuzz.cpp — libFuzzer target for the per-kind body decoders of the wire protocol
// (include/procxy/detail/protocol.hpp, src/protocol.cpp): what a peer's frame body turns into once
// frame_fuzz's header checks have passed it.
//
// Input: one kind byte, then a message body. The kind byte is a message_kind (1..13; any other
// value v is taken as v % 13 + 1) and picks the decoder that kind's receiver runs:
//   hello                                  decode_hello, then hello_mismatch
//   release                                decode_release
//   subscribe                              decode_subscribe
//   properties                             decode_properties
//   shutdown, dispose                      decode_empty
//   reply_error                            decode_reply_error (a decoder over the body)
//   reply_value                            decode_reply_value<void> (a void call's reply)
//   construct, call, invoke, notify, event decode_target (the values after it are value_fuzz's)
//
// Checked: a decoder fails only with procxy::protocol_error; it accepts exactly what an independent
// reading of the body layouts in protocol.hpp accepts and returns what that reading finds (every
// property value a view inside the body); for the canonical kinds (hello, release, subscribe,
// properties, and the target of a request) a decoded message re-encodes (encode_*) to a frame
// whose header is valid, of the same kind, with id 0, and whose body is byte for byte the input;
// a hello's mismatch text is empty exactly for our own protocol and build and otherwise printable
// and naming the peer; a rebuilt reply_error is a usable exception carrying the call's
// remote_info.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "fuzz_check.hpp"
#include "procxy/detail/buffer.hpp"
#include "procxy/detail/codec.hpp"
#include "procxy/detail/protocol.hpp"
#include "procxy/detail/remote_error.hpp"
#include "procxy/error.hpp"

namespace {

namespace pd = procxy::detail;
using bytes = std::span<const std::byte>;
using K = pd::message_kind;

constexpr std::size_t max_build_id = 256;  // decode_hello's limit
constexpr std::size_t default_max = std::size_t{256} << 20;

std::uint64_t little_endian(const std::byte* p, std::size_t n) {
  std::uint64_t v = 0;
  for (std::size_t i = n; i-- > 0;) v = (v << 8) | static_cast<std::uint64_t>(p[i]);
  return v;
}

bool same_bytes(bytes a, bytes b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size()) == 0);
}

// The body of the frame an encoder built, after checking its header as a receiver would.
bytes body_of(const pd::byte_buffer& frame, K kind) {
  PROCXY_FUZZ_CHECK(frame.size() >= pd::header_size);
  const pd::frame_header h = pd::check_frame_header(frame.data(), default_max);
  PROCXY_FUZZ_CHECK(h.kind == kind);
  PROCXY_FUZZ_CHECK(h.id == 0);
  PROCXY_FUZZ_CHECK(h.size == frame.size() - pd::header_size);
  return frame.view().subspan(pd::header_size);
}

// Runs `decode`; true if it rejected the body with protocol_error (anything else escapes to the
// catch (...) of LLVMFuzzerTestOneInput and aborts).
template <class F>
bool rejected(F&& decode) {
  try {
    decode();
  } catch (const procxy::protocol_error& e) {
    PROCXY_FUZZ_CHECK(e.kind() == procxy::error_kind::protocol);
    PROCXY_FUZZ_CHECK(e.what()[0] != '\0');
    return true;
  }
  return false;
}

bool printable(const std::string& s) {
  for (char c : s)
    if (c < 0x20 || c >= 0x7f) return false;
  return true;
}

// ---- the independent readings of the body layouts (protocol.hpp's header comment) -------------

struct hello_reading {
  std::uint32_t version;
  std::string build;
};
std::optional<hello_reading> read_hello(bytes in) {
  if (in.size() < 8) return std::nullopt;
  const std::uint64_t len = little_endian(in.data() + 4, 4);
  if (in.size() - 8 != len || len > max_build_id) return std::nullopt;
  return hello_reading{static_cast<std::uint32_t>(little_endian(in.data(), 4)),
                       std::string(reinterpret_cast<const char*>(in.data()) + 8, len)};
}

std::optional<std::vector<std::uint64_t>> read_release(bytes in) {
  if (in.size() < 4) return std::nullopt;
  const std::uint64_t n = little_endian(in.data(), 4);
  if ((in.size() - 4) % 8 != 0 || (in.size() - 4) / 8 != n) return std::nullopt;
  std::vector<std::uint64_t> ids;
  for (std::size_t at = 4; at < in.size(); at += 8) ids.push_back(little_endian(in.data() + at, 8));
  return ids;
}

std::optional<pd::subscribe_message> read_subscribe(bytes in) {
  if (in.size() != 9 || static_cast<unsigned>(in[8]) > 1) return std::nullopt;
  return pd::subscribe_message{little_endian(in.data(), 8), in[8] == std::byte{1}};
}

struct property_reading {
  std::uint64_t id;
  std::size_t offset;  // of the value, in the body
  std::size_t size;
};
std::optional<std::vector<property_reading>> read_properties(bytes in) {
  if (in.size() < 4) return std::nullopt;
  std::uint64_t n = little_endian(in.data(), 4);
  std::vector<property_reading> out;
  std::size_t at = 4;
  for (; n > 0; --n) {  // at most in.size() / 12 rounds: each takes 12 bytes or fails
    if (in.size() - at < 12) return std::nullopt;
    const std::uint64_t id = little_endian(in.data() + at, 8);
    const std::uint64_t len = little_endian(in.data() + at + 8, 4);
    at += 12;
    if (in.size() - at < len) return std::nullopt;
    out.push_back({id, at, static_cast<std::size_t>(len)});
    at += len;
  }
  if (at != in.size()) return std::nullopt;
  return out;
}

// ---- one check per decoder ---------------------------------------------------------------------

void fuzz_hello(bytes in) {
  const auto expected = read_hello(in);
  pd::hello_message h;
  PROCXY_FUZZ_CHECK(rejected([&] { h = pd::decode_hello(in); }) == !expected);
  if (!expected) return;
  PROCXY_FUZZ_CHECK(h.version == expected->version);
  PROCXY_FUZZ_CHECK(h.build == expected->build);

  pd::byte_buffer out;
  pd::encode_hello(out, h);
  PROCXY_FUZZ_CHECK(same_bytes(body_of(out, K::hello), in));

  const std::string text = pd::hello_mismatch(h, "child 42");
  const bool ours = h.version == pd::protocol_version && h.build == pd::build_id();
  PROCXY_FUZZ_CHECK(text.empty() == ours);
  if (!ours) {
    PROCXY_FUZZ_CHECK(printable(text));
    PROCXY_FUZZ_CHECK(text.find("the child 42 speaks protocol " + std::to_string(h.version) +
                                " (") != std::string::npos);
    PROCXY_FUZZ_CHECK(text.find("(" + pd::build_id() + ")") != std::string::npos);
  }
}

void fuzz_release(bytes in) {
  const auto expected = read_release(in);
  std::vector<std::uint64_t> ids;
  PROCXY_FUZZ_CHECK(rejected([&] { ids = pd::decode_release(in); }) == !expected);
  if (!expected) return;
  PROCXY_FUZZ_CHECK(ids == *expected);

  pd::byte_buffer out;
  pd::encode_release(out, ids);
  PROCXY_FUZZ_CHECK(same_bytes(body_of(out, K::release), in));
}

void fuzz_subscribe(bytes in) {
  const auto expected = read_subscribe(in);
  pd::subscribe_message m;
  PROCXY_FUZZ_CHECK(rejected([&] { m = pd::decode_subscribe(in); }) == !expected);
  if (!expected) return;
  PROCXY_FUZZ_CHECK(m.event == expected->event && m.on == expected->on);

  pd::byte_buffer out;
  pd::encode_subscribe(out, m);
  PROCXY_FUZZ_CHECK(same_bytes(body_of(out, K::subscribe), in));
}

void fuzz_properties(bytes in) {
  const auto expected = read_properties(in);
  std::vector<pd::property_value> values;
  PROCXY_FUZZ_CHECK(rejected([&] { values = pd::decode_properties(in); }) == !expected);
  if (!expected) return;
  PROCXY_FUZZ_CHECK(values.size() == expected->size());
  for (std::size_t i = 0; i < values.size(); ++i) {
    const auto& v = values[i];
    const auto& e = (*expected)[i];
    PROCXY_FUZZ_CHECK(v.id == e.id);
    PROCXY_FUZZ_CHECK(v.bytes.size() == e.size);
    // A view of exactly that part of the body (not a copy, nothing outside it).
    if (e.size != 0) PROCXY_FUZZ_CHECK(v.bytes.data() == in.data() + e.offset);
  }

  pd::byte_buffer out;
  pd::encode_properties(out, values);
  PROCXY_FUZZ_CHECK(same_bytes(body_of(out, K::properties), in));
}

void fuzz_empty(K kind, bytes in) {
  PROCXY_FUZZ_CHECK(rejected([&] { pd::decode_empty(kind, in); }) == !in.empty());
  pd::byte_buffer out;
  pd::encode_empty(out, kind);
  PROCXY_FUZZ_CHECK(body_of(out, kind).empty());
}

void fuzz_reply_void(bytes in) {
  pd::byte_reader r(in);
  pd::decoder d(r);
  PROCXY_FUZZ_CHECK(rejected([&] { pd::decode_reply_value<void>(d); }) == !in.empty());
}

void fuzz_reply_error(bytes in) {
  pd::byte_reader r(in);
  pd::decoder d(r);
  std::exception_ptr p;
  if (rejected([&] { p = pd::decode_reply_error(d, "fuzz::method", 42); })) return;
  PROCXY_FUZZ_CHECK(p != nullptr);
  PROCXY_FUZZ_CHECK(r.at_end());  // the whole body, or a protocol_error
  try {
    std::rethrow_exception(p);
  } catch (const std::exception& e) {
    volatile std::size_t n = std::strlen(e.what());  // reads the whole message (ASan)
    (void)n;
    if (const auto* info = procxy::remote_info_of(e)) {
      PROCXY_FUZZ_CHECK(info->method() == "fuzz::method");
      PROCXY_FUZZ_CHECK(info->pid() == 42);
    } else {
      // Only procxy's own serialization_error and spawn_error (a construct request the child
      // cannot serve) cross without a remote_info.
      PROCXY_FUZZ_CHECK(dynamic_cast<const procxy::serialization_error*>(&e) != nullptr ||
                        dynamic_cast<const procxy::spawn_error*>(&e) != nullptr);
    }
  }
}

void fuzz_target(K kind, bytes in) {
  pd::byte_reader r(in);
  pd::decoder d(r);
  std::uint64_t target = 0;
  PROCXY_FUZZ_CHECK(rejected([&] { target = pd::decode_target(d); }) == (in.size() < 8));
  if (in.size() < 8) return;
  PROCXY_FUZZ_CHECK(target == little_endian(in.data(), 8));
  PROCXY_FUZZ_CHECK(r.remaining() == in.size() - 8);  // the values follow, untouched

  pd::byte_buffer out;
  pd::encode_request(out, kind, target, nullptr);
  PROCXY_FUZZ_CHECK(same_bytes(body_of(out, kind), in.first(8)));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::uint8_t k = (data[0] >= 1 && data[0] <= pd::max_message_kind)
                             ? data[0]
                             : static_cast<std::uint8_t>(data[0] % pd::max_message_kind + 1);
  const auto kind = static_cast<K>(k);
  const bytes in(reinterpret_cast<const std::byte*>(data) + 1, size - 1);
  try {
    switch (kind) {
      case K::hello: fuzz_hello(in); break;
      case K::release: fuzz_release(in); break;
      case K::subscribe: fuzz_subscribe(in); break;
      case K::properties: fuzz_properties(in); break;
      case K::shutdown:
      case K::dispose: fuzz_empty(kind, in); break;
      case K::reply_value: fuzz_reply_void(in); break;
      case K::reply_error: fuzz_reply_error(in); break;
      case K::construct:
      case K::call:
      case K::invoke:
      case K::notify:
      case K::event: fuzz_target(kind, in); break;
    }
  } catch (...) {
    procxy_fuzz::unexpected_exception("message_fuzz");
  }
  return 0;
}
