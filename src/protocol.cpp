// The wire protocol's non-template encoders and decoders (include/procxy/detail/protocol.hpp).
#include "procxy/detail/protocol.hpp"

#include <climits>
#include <string>

#include "procxy/detail/remote_error.hpp"

#ifndef PROCXY_VERSION
#error "PROCXY_VERSION must be defined by the build (CMakeLists.txt)"
#endif

namespace procxy::detail {

const char* to_string(message_kind k) noexcept {
  switch (k) {
    case message_kind::construct: return "construct";
    case message_kind::call: return "call";
    case message_kind::reply_value: return "reply";
    case message_kind::reply_error: return "error";
    case message_kind::shutdown: return "shutdown";
    case message_kind::invoke: return "invoke";
    case message_kind::notify: return "notify";
    case message_kind::release: return "release";
    case message_kind::event: return "event";
    case message_kind::subscribe: return "subscribe";
    case message_kind::properties: return "properties";
    case message_kind::dispose: return "dispose";
    case message_kind::hello: return "hello";
  }
  return "unknown";
}

bool may_carry_descriptors(message_kind k) noexcept {
  switch (k) {
    case message_kind::construct:
    case message_kind::call:
    case message_kind::reply_value:
    case message_kind::invoke:
    case message_kind::notify:
    case message_kind::event: return true;
    default: return false;
  }
}

frame_header check_frame_header(const std::byte* in, std::size_t max_message_size,
                                std::size_t max_descriptors) {
  frame_header h;
  std::memcpy(&h, in, header_size);
  auto k = static_cast<std::uint8_t>(h.kind);
  if (k == 0 || k > max_message_kind)
    throw protocol_error("procxy: unknown message kind " + std::to_string(k));
  if (h.flags != 0) throw protocol_error("procxy: reserved header bits are set");
  if (h.size > max_message_size)
    throw protocol_error("procxy: message of " + std::to_string(h.size) +
                         " bytes exceeds max_message_size " + std::to_string(max_message_size));
  if (h.descriptors != 0) {
    if (!may_carry_descriptors(h.kind))
      throw protocol_error(std::string("procxy: a ") + to_string(h.kind) + " message announces " +
                           std::to_string(h.descriptors) + " descriptors; it carries none");
    if (h.descriptors > max_descriptors)
      throw protocol_error("procxy: a message announces " + std::to_string(h.descriptors) +
                           " descriptors, more than max_descriptors_per_message (" +
                           std::to_string(max_descriptors) + ")");
  }
  return h;
}

// ---- hello -------------------------------------------------------------------------------------

const std::string& build_id() {
  static const std::string id = [] {
    std::string s = "procxy " PROCXY_VERSION;
#if defined(__x86_64__)
    s += " x86_64";
#elif defined(__aarch64__)
    s += " aarch64";
#elif defined(__i386__)
    s += " i386";
#else
    s += " other-cpu";
#endif
    s += (__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__) ? " LE" : " BE";
    s += sizeof(long) == 8 ? " LP64" : " ILP32";
    return s;
  }();
  return id;
}

void encode_hello(byte_buffer& out, const hello_message& h) {
  build_frame(out, message_kind::hello, 0, [&](encoder& e) {
    e.raw(h.version);
    e(h.build);
  });
}

hello_message decode_hello(std::span<const std::byte> body) {
  byte_reader r(body);
  decoder d(r);
  hello_message h;
  h.version = d.raw<std::uint32_t>();
  h.build = d.get<std::string>();
  if (!r.at_end()) throw protocol_error("procxy: trailing bytes after hello");
  if (h.build.size() > 256)
    throw protocol_error("procxy: a hello's build id is longer than 256 bytes");
  return h;
}

std::string hello_mismatch(const hello_message& peer, const std::string& peer_name) {
  if (peer.version == protocol_version && peer.build == build_id()) return {};
  // The peer's build id is shown printable only (it comes from an untrusted process).
  std::string b;
  for (char c : peer.build) b += (c >= 0x20 && c < 0x7f) ? c : '?';
  return "procxy: protocol mismatch: this process speaks protocol " +
         std::to_string(protocol_version) + " (" + build_id() + "), the " + peer_name +
         " speaks protocol " + std::to_string(peer.version) + " (" + b +
         "); build the worker and the parent against the same procxy";
}

// ---- replies -----------------------------------------------------------------------------------

void encode_reply_void(byte_buffer& out, std::uint64_t id) {
  build_frame(out, message_kind::reply_value, id, [](encoder&) {});
}

void encode_reply_error(byte_buffer& out, std::uint64_t id) {
  build_frame(out, message_kind::reply_error, id, [](encoder& e) { encode_current_exception(e); });
}

std::exception_ptr decode_reply_error(decoder& d, const char* what, int peer_pid) {
  auto e = decode_remote_error(d, what, peer_pid);
  expect_end(d);
  return e;
}

// ---- shutdown, dispose -------------------------------------------------------------------------

void encode_empty(byte_buffer& out, message_kind kind) {
  build_frame(out, kind, 0, [](encoder&) {});
}

void decode_empty(message_kind kind, std::span<const std::byte> body) {
  if (!body.empty())
    throw protocol_error(std::string("procxy: ") + to_string(kind) + " message with a body");
}

// ---- release -----------------------------------------------------------------------------------

void encode_release(byte_buffer& out, std::span<const std::uint64_t> ids) {
  build_frame(out, message_kind::release, 0, [&](encoder& e) {
    e.raw(static_cast<std::uint32_t>(ids.size()));
    for (auto id : ids) e.raw(id);
  });
}

std::vector<std::uint64_t> decode_release(std::span<const std::byte> body) {
  byte_reader r(body);
  decoder d(r);
  auto n = d.count(sizeof(std::uint64_t));
  std::vector<std::uint64_t> ids(n);
  for (auto& id : ids) id = d.raw<std::uint64_t>();
  if (!r.at_end()) throw protocol_error("procxy: trailing bytes after release");
  return ids;
}

// ---- subscribe ---------------------------------------------------------------------------------

void encode_subscribe(byte_buffer& out, subscribe_message m) {
  build_frame(out, message_kind::subscribe, 0, [&](encoder& e) {
    e.raw(m.event);
    e.raw(static_cast<std::uint8_t>(m.on ? 1 : 0));
  });
}

subscribe_message decode_subscribe(std::span<const std::byte> body) {
  byte_reader r(body);
  decoder d(r);
  subscribe_message m;
  m.event = d.raw<std::uint64_t>();
  auto on = d.raw<std::uint8_t>();
  if (!r.at_end() || on > 1) throw protocol_error("procxy: malformed subscribe message");
  m.on = on == 1;
  return m;
}

// ---- properties --------------------------------------------------------------------------------

void encode_properties(byte_buffer& out, std::span<const property_value> values) {
  build_frame(out, message_kind::properties, 0, [&](encoder& e) {
    e.raw(static_cast<std::uint32_t>(values.size()));
    for (const auto& v : values) {
      if (v.bytes.size() > UINT32_MAX)
        throw serialization_error("procxy: a property value exceeds 4 GiB");
      e.raw(v.id);
      e.raw(static_cast<std::uint32_t>(v.bytes.size()));
      out.append(v.bytes.data(), v.bytes.size());
    }
  });
}

std::vector<property_value> decode_properties(std::span<const std::byte> body) {
  byte_reader r(body);
  decoder d(r);
  auto n = d.count(sizeof(std::uint64_t) + sizeof(std::uint32_t));
  std::vector<property_value> values(n);
  for (auto& v : values) {
    v.id = d.raw<std::uint64_t>();
    auto len = d.count(1);
    v.bytes = std::span<const std::byte>(r.take(len), len);
  }
  if (!r.at_end()) throw protocol_error("procxy: trailing bytes after properties");
  return values;
}

}  // namespace procxy::detail
