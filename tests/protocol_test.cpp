// Protocol-level tests, without any process: every message kind of detail/protocol.hpp goes
// through its encoder and back through its decoder, the bodies have the layout the header comment
// describes, and each decoder rejects what a hostile peer could send (truncated bodies, trailing
// bytes, counts past the body, bad flag bytes, oversized or malformed headers) with a
// procxy::protocol_error whose message says what was wrong.
#include "procxy/detail/protocol.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <initializer_list>
#include <limits>
#include <set>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <typeinfo>
#include <vector>

#include "procxy/detail/buffer.hpp"
#include "procxy/detail/codec.hpp"
#include "procxy/detail/remote_error.hpp"
#include "procxy/error.hpp"

namespace {

namespace pd = procxy::detail;
using K = pd::message_kind;
using bytes = std::span<const std::byte>;
using testing::HasSubstr;
using testing::StartsWith;

constexpr std::size_t default_max = std::size_t{256} << 20;  // options.hpp's max_message_size

// ---- helpers ---------------------------------------------------------------------------------

// Builds wire bytes by hand, in the codec's byte order (native, as encoder::raw writes them).
class wire {
 public:
  wire& u8(std::uint8_t v) { return put(v); }
  wire& u16(std::uint16_t v) { return put(v); }
  wire& u32(std::uint32_t v) { return put(v); }
  wire& u64(std::uint64_t v) { return put(v); }
  wire& chars(std::string_view s) {
    for (char c : s) bytes_.push_back(static_cast<std::byte>(c));
    return *this;
  }
  wire& str(std::string_view s) { return u32(static_cast<std::uint32_t>(s.size())).chars(s); }
  wire& append(bytes b) {
    bytes_.insert(bytes_.end(), b.begin(), b.end());
    return *this;
  }
  // A frame header (16 bytes).
  wire& header(std::uint32_t size, std::uint8_t kind, std::uint64_t id, std::uint8_t flags = 0,
               std::uint16_t reserved = 0) {
    return u32(size).u8(kind).u8(flags).u16(reserved).u64(id);
  }
  wire& frame(K kind, std::uint64_t id, bytes body) {
    return header(static_cast<std::uint32_t>(body.size()), static_cast<std::uint8_t>(kind), id)
        .append(body);
  }
  bytes view() const { return bytes_; }
  const std::byte* data() const { return bytes_.data(); }
  std::size_t size() const { return bytes_.size(); }
  std::vector<std::byte> vec() const { return bytes_; }

 private:
  template <class T>
  wire& put(T v) {
    std::array<std::byte, sizeof(T)> a;
    std::memcpy(a.data(), &v, sizeof(T));
    bytes_.insert(bytes_.end(), a.begin(), a.end());
    return *this;
  }
  std::vector<std::byte> bytes_;
};

std::vector<std::byte> vec(bytes b) { return {b.begin(), b.end()}; }

// The header of the frame an encoder built, checked as a receiver would check it.
pd::frame_header header_of(const pd::byte_buffer& frame) {
  EXPECT_GE(frame.size(), pd::header_size);
  return pd::check_frame_header(frame.data(), default_max);
}

// Its body: checks that the header's size is exactly what follows.
bytes body_of(const pd::byte_buffer& frame) {
  const pd::frame_header h = header_of(frame);
  EXPECT_EQ(h.size, frame.size() - pd::header_size);
  return frame.view().subspan(pd::header_size);
}

// Passes when `f` throws procxy::protocol_error whose what() contains one of `substrings`.
template <class F>
testing::AssertionResult throws_protocol_error(F&& f,
                                               std::initializer_list<std::string_view> substrings) {
  try {
    f();
  } catch (const procxy::protocol_error& e) {
    const std::string what = e.what();
    for (auto s : substrings)
      if (what.find(s) != std::string::npos) return testing::AssertionSuccess();
    auto r = testing::AssertionFailure() << "protocol_error \"" << what << "\" contains none of:";
    for (auto s : substrings) r << " \"" << s << "\"";
    return r;
  } catch (const std::exception& e) {
    return testing::AssertionFailure() << "threw " << pd::demangle(typeid(e).name()) << " ("
                                       << e.what() << "), not procxy::protocol_error";
  } catch (...) {
    return testing::AssertionFailure() << "threw something not derived from std::exception";
  }
  return testing::AssertionFailure() << "did not throw";
}
template <class F>
testing::AssertionResult throws_protocol_error(F&& f, std::string_view substring) {
  return throws_protocol_error(std::forward<F>(f), {substring});
}

// Every proper prefix of `body` must be rejected by `decode` (truncation is the commonest
// malformation); the codec says "truncated value: need N bytes" or, when the cut falls inside a
// counted run, "count N exceeds the M bytes left".
template <class F>
void expect_every_prefix_rejected(bytes body, F decode) {
  ASSERT_FALSE(body.empty());
  for (std::size_t n = 0; n < body.size(); ++n)
    EXPECT_TRUE(
        throws_protocol_error([&] { decode(body.first(n)); }, {"truncated value", "exceeds the"}))
        << "prefix of " << n << " of " << body.size() << " bytes";
}

// The body plus one more byte must be rejected as trailing bytes.
template <class F>
void expect_trailing_byte_rejected(bytes body, F decode, std::string_view message) {
  wire w;
  w.append(body).u8(0);
  EXPECT_TRUE(throws_protocol_error([&] { decode(w.view()); }, message));
}

// ---- frame header ------------------------------------------------------------------------------

TEST(ProtocolFrame, AcceptsEveryKnownKindAndReadsEveryField) {
  for (unsigned k = 1; k <= pd::max_message_kind; ++k) {
    wire w;
    w.header(40, static_cast<std::uint8_t>(k), 0x0102030405060708u);
    const pd::frame_header h = pd::check_frame_header(w.data(), default_max);
    EXPECT_EQ(h.size, 40u);
    EXPECT_EQ(static_cast<unsigned>(h.kind), k);
    EXPECT_EQ(h.flags, 0u);
    EXPECT_EQ(h.descriptors, 0u);
    EXPECT_EQ(h.id, 0x0102030405060708u);
  }
}

TEST(ProtocolFrame, RejectsKindZero) {
  wire w;
  w.header(0, 0, 1);
  EXPECT_TRUE(throws_protocol_error([&] { pd::check_frame_header(w.data(), default_max); },
                                    "procxy: unknown message kind 0"));
}

TEST(ProtocolFrame, RejectsKindsPastTheLast) {
  for (unsigned k : {14u, 15u, 128u, 255u}) {
    wire w;
    w.header(0, static_cast<std::uint8_t>(k), 1);
    EXPECT_TRUE(throws_protocol_error([&] { pd::check_frame_header(w.data(), default_max); },
                                      "procxy: unknown message kind " + std::to_string(k)))
        << k;
  }
}

TEST(ProtocolFrame, RejectsFlags) {
  for (std::uint8_t flags :
       {std::uint8_t{1}, std::uint8_t{2}, std::uint8_t{0x80}, std::uint8_t{0xff}}) {
    wire w;
    w.header(0, static_cast<std::uint8_t>(K::call), 1, flags);
    EXPECT_TRUE(throws_protocol_error([&] { pd::check_frame_header(w.data(), default_max); },
                                      "procxy: reserved header bits are set"))
        << int{flags};
  }
}

// The u16 after the flags counts the frame's descriptors (docs/design.md "Descriptors").
TEST(ProtocolFrame, RejectsMoreDescriptorsThanAllowed) {
  for (std::uint16_t n :
       {std::uint16_t{1}, std::uint16_t{0x100}, std::uint16_t{0x8000}, std::uint16_t{0xffff}}) {
    wire w;
    w.header(0, static_cast<std::uint8_t>(K::call), 1, 0, n);
    EXPECT_TRUE(
        throws_protocol_error([&] { pd::check_frame_header(w.data(), default_max); },
                              "procxy: a message announces " + std::to_string(n) +
                                  " descriptors, more than max_descriptors_per_message (0)"))
        << n;
  }
  wire w;
  w.header(0, static_cast<std::uint8_t>(K::call), 1, 0, 64);
  EXPECT_EQ(pd::check_frame_header(w.data(), default_max, 64).descriptors, 64u);
  EXPECT_TRUE(throws_protocol_error([&] { pd::check_frame_header(w.data(), default_max, 63); },
                                    "more than max_descriptors_per_message (63)"));
}

TEST(ProtocolFrame, RejectsDescriptorsOnKindsWithoutValues) {
  for (auto k : {K::reply_error, K::shutdown, K::release, K::subscribe, K::properties, K::dispose,
                 K::hello}) {
    wire w;
    w.header(0, static_cast<std::uint8_t>(k), 1, 0, 1);
    EXPECT_TRUE(throws_protocol_error([&] { pd::check_frame_header(w.data(), default_max, 64); },
                                      "descriptors; it carries none"))
        << pd::to_string(k);
  }
  for (auto k : {K::construct, K::call, K::reply_value, K::invoke, K::notify, K::event}) {
    wire w;
    w.header(0, static_cast<std::uint8_t>(k), 1, 0, 1);
    EXPECT_EQ(pd::check_frame_header(w.data(), default_max, 64).descriptors, 1u)
        << pd::to_string(k);
  }
}

TEST(ProtocolFrame, SizeAtTheLimitIsAcceptedOneMoreIsNot) {
  wire at;
  at.header(64, static_cast<std::uint8_t>(K::reply_value), 3);
  EXPECT_EQ(pd::check_frame_header(at.data(), 64).size, 64u);

  wire over;
  over.header(65, static_cast<std::uint8_t>(K::reply_value), 3);
  EXPECT_TRUE(throws_protocol_error([&] { pd::check_frame_header(over.data(), 64); },
                                    "procxy: message of 65 bytes exceeds max_message_size 64"));
}

TEST(ProtocolFrame, SizeOverTheDefaultLimit) {
  wire w;
  w.header(0xFFFFFFFFu, static_cast<std::uint8_t>(K::call), 1);
  EXPECT_TRUE(
      throws_protocol_error([&] { pd::check_frame_header(w.data(), default_max); },
                            "message of 4294967295 bytes exceeds max_message_size 268435456"));
  wire one_over;
  one_over.header(static_cast<std::uint32_t>(default_max + 1), static_cast<std::uint8_t>(K::call),
                  1);
  EXPECT_TRUE(throws_protocol_error([&] { pd::check_frame_header(one_over.data(), default_max); },
                                    "exceeds max_message_size"));
}

TEST(ProtocolFrame, LimitZeroAllowsOnlyEmptyBodies) {
  wire empty;
  empty.header(0, static_cast<std::uint8_t>(K::shutdown), 0);
  EXPECT_EQ(pd::check_frame_header(empty.data(), 0).size, 0u);
  wire one;
  one.header(1, static_cast<std::uint8_t>(K::shutdown), 0);
  EXPECT_TRUE(throws_protocol_error([&] { pd::check_frame_header(one.data(), 0); },
                                    "message of 1 bytes exceeds max_message_size 0"));
}

TEST(ProtocolFrame, EveryKindHasItsOwnName) {
  std::set<std::string> names;
  for (unsigned k = 1; k <= pd::max_message_kind; ++k) {
    const std::string name = pd::to_string(static_cast<K>(k));
    EXPECT_NE(name, "unknown") << k;
    names.insert(name);
  }
  EXPECT_EQ(names.size(), pd::max_message_kind);
  EXPECT_STREQ(pd::to_string(static_cast<K>(0)), "unknown");
  EXPECT_STREQ(pd::to_string(static_cast<K>(14)), "unknown");
  EXPECT_STREQ(pd::to_string(K::hello), "hello");
  EXPECT_STREQ(pd::to_string(K::release), "release");
}

// ---- decode_frames -----------------------------------------------------------------------------

struct seen_frame {
  pd::frame_header header;
  std::vector<std::byte> body;
};

std::vector<seen_frame> collect(bytes in, std::size_t max, std::size_t* consumed) {
  std::vector<seen_frame> out;
  *consumed = pd::decode_frames(in.data(), in.size(), max,
                                [&](const pd::frame_header& h, const std::byte* body) {
                                  out.push_back({h, std::vector<std::byte>(body, body + h.size)});
                                });
  return out;
}

// Three frames: a call with a 12-byte body, an empty shutdown and a reply with a 1-byte body.
wire three_frames() {
  wire call_body, reply_body;
  call_body.u64(77).u32(5);
  reply_body.u8(9);
  wire w;
  w.frame(K::call, 1, call_body.view())
      .frame(K::shutdown, 0, {})
      .frame(K::reply_value, 2, reply_body.view());
  return w;
}

TEST(ProtocolFrames, SplitsAWholeStream) {
  const wire w = three_frames();
  std::size_t consumed = 0;
  auto frames = collect(w.view(), default_max, &consumed);
  EXPECT_EQ(consumed, w.size());
  ASSERT_EQ(frames.size(), 3u);
  EXPECT_EQ(frames[0].header.kind, K::call);
  EXPECT_EQ(frames[0].header.id, 1u);
  EXPECT_EQ(frames[0].body, vec(w.view().subspan(16, 12)));
  EXPECT_EQ(frames[1].header.kind, K::shutdown);
  EXPECT_TRUE(frames[1].body.empty());
  EXPECT_EQ(frames[2].header.kind, K::reply_value);
  EXPECT_EQ(frames[2].header.id, 2u);
  ASSERT_EQ(frames[2].body.size(), 1u);
  EXPECT_EQ(frames[2].body[0], std::byte{9});
}

TEST(ProtocolFrames, EmptyInputConsumesNothing) {
  std::size_t consumed = 1;
  EXPECT_TRUE(collect({}, default_max, &consumed).empty());
  EXPECT_EQ(consumed, 0u);
}

TEST(ProtocolFrames, LeavesAPartialHeader) {
  const wire whole = three_frames();
  for (std::size_t cut = 1; cut < pd::header_size; ++cut) {
    wire w = three_frames();
    w.append(whole.view().first(cut));  // the start of a fourth frame
    std::size_t consumed = 0;
    EXPECT_EQ(collect(w.view(), default_max, &consumed).size(), 3u) << cut;
    EXPECT_EQ(consumed, whole.size()) << cut;
  }
}

TEST(ProtocolFrames, LeavesAPartialBody) {
  const wire w = three_frames();  // the first frame's body ends at 28, the last frame starts at 44
  for (std::size_t n : {std::size_t{16}, std::size_t{20}, std::size_t{27}}) {
    std::size_t consumed = 1;
    EXPECT_TRUE(collect(w.view().first(n), default_max, &consumed).empty()) << n;
    EXPECT_EQ(consumed, 0u) << n;
  }
  std::size_t consumed = 0;
  EXPECT_EQ(collect(w.view().first(w.size() - 1), default_max, &consumed).size(), 2u);
  EXPECT_EQ(consumed, w.size() - 17);
}

TEST(ProtocolFrames, ByteByByteGivesTheSameFrames) {
  const wire w = three_frames();
  std::vector<std::byte> buf;
  std::vector<seen_frame> frames;
  for (std::byte b : w.view()) {
    buf.push_back(b);
    std::size_t used = 0;
    auto got = collect(buf, default_max, &used);
    frames.insert(frames.end(), got.begin(), got.end());
    buf.erase(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(used));
  }
  EXPECT_TRUE(buf.empty());
  std::size_t consumed = 0;
  const auto whole = collect(w.view(), default_max, &consumed);
  ASSERT_EQ(frames.size(), whole.size());
  for (std::size_t i = 0; i < frames.size(); ++i) {
    EXPECT_EQ(frames[i].header.kind, whole[i].header.kind) << i;
    EXPECT_EQ(frames[i].header.id, whole[i].header.id) << i;
    EXPECT_EQ(frames[i].body, whole[i].body) << i;
  }
}

TEST(ProtocolFrames, DeliversTheGoodFramesBeforeABadHeader) {
  wire w = three_frames();
  w.header(0, 14, 3);
  std::vector<K> kinds;
  EXPECT_TRUE(throws_protocol_error(
      [&] {
        pd::decode_frames(
            w.data(), w.size(), default_max,
            [&](const pd::frame_header& h, const std::byte*) { kinds.push_back(h.kind); });
      },
      "procxy: unknown message kind 14"));
  EXPECT_EQ(kinds, (std::vector<K>{K::call, K::shutdown, K::reply_value}));
}

TEST(ProtocolFrames, RejectsAnOversizedHeaderBeforeItsBodyArrives) {
  wire w;
  w.header(1000, static_cast<std::uint8_t>(K::call), 1);  // the body never comes
  EXPECT_TRUE(
      throws_protocol_error([&] { pd::decode_frames(w.data(), w.size(), 64, [](auto&&...) {}); },
                            "message of 1000 bytes exceeds max_message_size 64"));
}

TEST(ProtocolFrames, RejectsABadHeaderWhoseBodyIsMissing) {
  wire w;
  w.header(5, static_cast<std::uint8_t>(K::call), 1, 1);  // flags set, body not there
  EXPECT_TRUE(throws_protocol_error(
      [&] { pd::decode_frames(w.data(), w.size(), default_max, [](auto&&...) {}); },
      "reserved header bits are set"));
}

// ---- hello -------------------------------------------------------------------------------------

pd::hello_message decode_hello(bytes b) { return pd::decode_hello(b); }

TEST(ProtocolHello, OursRoundTrips) {
  pd::byte_buffer out;
  pd::encode_hello(out);
  const pd::frame_header h = header_of(out);
  EXPECT_EQ(h.kind, K::hello);
  EXPECT_EQ(h.id, 0u);
  const auto m = pd::decode_hello(body_of(out));
  EXPECT_EQ(m.version, pd::protocol_version);
  EXPECT_EQ(m.build, pd::build_id());
}

TEST(ProtocolHello, WireLayout) {
  pd::byte_buffer out;
  pd::encode_hello(out, {7, "procxy 9.9 test"});
  wire expected;
  expected.u32(7).str("procxy 9.9 test");
  EXPECT_EQ(vec(body_of(out)), expected.vec());
  const auto m = pd::decode_hello(expected.view());
  EXPECT_EQ(m.version, 7u);
  EXPECT_EQ(m.build, "procxy 9.9 test");
}

TEST(ProtocolHello, BuildIdNamesProcxyAndTheDataModel) {
  const std::string& id = pd::build_id();
  EXPECT_THAT(id, StartsWith("procxy "));
  EXPECT_THAT(id, testing::AnyOf(HasSubstr(" LE"), HasSubstr(" BE")));
  EXPECT_THAT(id, testing::AnyOf(HasSubstr(" LP64"), HasSubstr(" ILP32")));
  EXPECT_LE(id.size(), 256u);
  for (char c : id) EXPECT_TRUE(c >= 0x20 && c < 0x7f) << int{c};
}

TEST(ProtocolHello, EmptyBuildIdRoundTrips) {
  pd::byte_buffer out;
  pd::encode_hello(out, {0, ""});
  const auto m = pd::decode_hello(body_of(out));
  EXPECT_EQ(m.version, 0u);
  EXPECT_EQ(m.build, "");
}

TEST(ProtocolHello, TruncatedBodies) {
  pd::byte_buffer out;
  pd::encode_hello(out);
  expect_every_prefix_rejected(body_of(out), decode_hello);
}

TEST(ProtocolHello, TrailingBytes) {
  pd::byte_buffer out;
  pd::encode_hello(out);
  expect_trailing_byte_rejected(body_of(out), decode_hello, "procxy: trailing bytes after hello");
}

TEST(ProtocolHello, BuildIdOf256BytesIsAcceptedLongerIsNot) {
  const std::string at_limit(256, 'b');
  wire ok;
  ok.u32(pd::protocol_version).str(at_limit);
  EXPECT_EQ(pd::decode_hello(ok.view()).build, at_limit);

  wire over;
  over.u32(pd::protocol_version).str(std::string(257, 'b'));
  EXPECT_TRUE(throws_protocol_error([&] { pd::decode_hello(over.view()); },
                                    "procxy: a hello's build id is longer than 256 bytes"));
  wire far_over;
  far_over.u32(pd::protocol_version).str(std::string(100000, 'b'));
  EXPECT_TRUE(
      throws_protocol_error([&] { pd::decode_hello(far_over.view()); }, "longer than 256 bytes"));
}

TEST(ProtocolHello, BuildIdCountPastTheBody) {
  wire w;
  w.u32(pd::protocol_version).u32(1000).chars("abc");
  EXPECT_TRUE(throws_protocol_error([&] { pd::decode_hello(w.view()); },
                                    "count 1000 exceeds the 3 bytes left"));
  wire huge;
  huge.u32(pd::protocol_version).u32(0xFFFFFFFFu);
  EXPECT_TRUE(
      throws_protocol_error([&] { pd::decode_hello(huge.view()); }, "count 4294967295 exceeds"));
}

TEST(ProtocolHello, NoMismatchWithOurOwnHello) {
  pd::byte_buffer out;
  pd::encode_hello(out);
  EXPECT_EQ(pd::hello_mismatch(pd::decode_hello(body_of(out)), "child 1234"), "");
}

TEST(ProtocolHello, MismatchedVersionNamesBothSides) {
  const pd::hello_message peer{pd::protocol_version + 1, "procxy 0.0.1 x86_64 LE LP64"};
  const std::string text = pd::hello_mismatch(peer, "child 1234");
  EXPECT_THAT(text, StartsWith("procxy: protocol mismatch"));
  EXPECT_THAT(text, HasSubstr("this process speaks protocol " +
                              std::to_string(pd::protocol_version) + " (" + pd::build_id() + ")"));
  EXPECT_THAT(
      text, HasSubstr("the child 1234 speaks protocol " + std::to_string(pd::protocol_version + 1) +
                      " (procxy 0.0.1 x86_64 LE LP64)"));
}

TEST(ProtocolHello, MismatchedBuildWithTheSameVersion) {
  const pd::hello_message peer{pd::protocol_version, pd::build_id() + " (other)"};
  const std::string text = pd::hello_mismatch(peer, "parent");
  EXPECT_THAT(text, HasSubstr("the parent speaks protocol " + std::to_string(pd::protocol_version) +
                              " (" + pd::build_id() + " (other))"));
  EXPECT_THAT(text, HasSubstr("(" + pd::build_id() + "), the parent"));
}

TEST(ProtocolHello, OlderProtocolIsAMismatchEvenWithOurBuildId) {
  const pd::hello_message peer{1, pd::build_id()};
  EXPECT_THAT(pd::hello_mismatch(peer, "parent"), HasSubstr("the parent speaks protocol 1 ("));
}

TEST(ProtocolHello, MismatchShowsTheUntrustedBuildIdPrintableOnly) {
  const pd::hello_message peer{pd::protocol_version, std::string("ab\n\x01\x7f\xff"
                                                                 "c\0d",
                                                                 9)};
  const std::string text = pd::hello_mismatch(peer, "child 7");
  EXPECT_THAT(text, HasSubstr("(ab????c?d)"));
  for (char c : text) EXPECT_TRUE(c >= 0x20 && c < 0x7f) << int{c};
}

// ---- requests: construct, call, invoke, notify, event ------------------------------------------

TEST(ProtocolRequest, EveryTargetedKindRoundTrips) {
  for (K kind : {K::construct, K::call, K::invoke, K::notify, K::event}) {
    pd::byte_buffer out;
    pd::encode_request(out, kind, 0xfedcba9876543210u, nullptr, std::int32_t{-42},
                       std::string("arg"), 2.5);
    const pd::frame_header h = header_of(out);
    EXPECT_EQ(h.kind, kind) << pd::to_string(kind);
    EXPECT_EQ(h.id, 0u) << pd::to_string(kind);  // the connection assigns it
    pd::byte_reader r(body_of(out));
    pd::decoder d(r);
    EXPECT_EQ(pd::decode_target(d), 0xfedcba9876543210u);
    EXPECT_EQ(d.get<std::int32_t>(), -42);
    EXPECT_EQ(d.get<std::string>(), "arg");
    EXPECT_EQ(d.get<double>(), 2.5);
    EXPECT_TRUE(r.at_end()) << pd::to_string(kind);
  }
}

TEST(ProtocolRequest, WireLayoutIsTheTargetThenTheValues) {
  pd::byte_buffer out;
  pd::encode_request(out, K::call, 5, nullptr, std::uint16_t{0x0102});
  wire expected;
  expected.u64(5).u16(0x0102);
  EXPECT_EQ(vec(body_of(out)), expected.vec());

  pd::encode_request(out, K::notify, 6, nullptr);  // reuses the buffer; no values
  wire target_only;
  target_only.u64(6);
  EXPECT_EQ(header_of(out).kind, K::notify);
  EXPECT_EQ(vec(body_of(out)), target_only.vec());
}

TEST(ProtocolRequest, TruncatedTarget) {
  wire w;
  w.u64(0x1122334455667788u);
  expect_every_prefix_rejected(w.view(), [](bytes b) {
    pd::byte_reader r(b);
    pd::decoder d(r);
    pd::decode_target(d);
  });
  EXPECT_TRUE(throws_protocol_error(
      [&] {
        pd::byte_reader r(w.view().first(3));
        pd::decoder d(r);
        pd::decode_target(d);
      },
      "truncated value: need 8 bytes, 3 left"));
}

// ---- replies -----------------------------------------------------------------------------------

TEST(ProtocolReply, ValueRoundTrips) {
  pd::byte_buffer out;
  pd::encode_reply_value(out, 17, nullptr, std::vector<std::int32_t>{1, -2, 3});
  const pd::frame_header h = header_of(out);
  EXPECT_EQ(h.kind, K::reply_value);
  EXPECT_EQ(h.id, 17u);
  pd::byte_reader r(body_of(out));
  pd::decoder d(r);
  EXPECT_EQ(pd::decode_reply_value<std::vector<std::int32_t>>(d),
            (std::vector<std::int32_t>{1, -2, 3}));
}

TEST(ProtocolReply, VoidHasNoBody) {
  pd::byte_buffer out;
  pd::encode_reply_void(out, 99);
  const pd::frame_header h = header_of(out);
  EXPECT_EQ(h.kind, K::reply_value);
  EXPECT_EQ(h.id, 99u);
  EXPECT_EQ(h.size, 0u);
  pd::byte_reader r(body_of(out));
  pd::decoder d(r);
  EXPECT_NO_THROW(pd::decode_reply_value<void>(d));
}

TEST(ProtocolReply, ValueWithTrailingBytes) {
  wire w;
  w.u32(5).u8(1);
  EXPECT_TRUE(throws_protocol_error(
      [&] {
        pd::byte_reader r(w.view());
        pd::decoder d(r);
        pd::decode_reply_value<std::int32_t>(d);
      },
      "procxy: trailing bytes after a reply"));
  EXPECT_TRUE(throws_protocol_error(
      [&] {
        pd::byte_reader r(w.view().first(1));
        pd::decoder d(r);
        pd::decode_reply_value<void>(d);
      },
      "procxy: trailing bytes after a reply"));
}

TEST(ProtocolReply, TruncatedValue) {
  wire w;
  w.u64(1);
  expect_every_prefix_rejected(w.view(), [](bytes b) {
    pd::byte_reader r(b);
    pd::decoder d(r);
    pd::decode_reply_value<std::uint64_t>(d);
  });
}

pd::byte_buffer domain_error_reply(std::uint64_t id) {
  pd::byte_buffer out;
  try {
    throw std::domain_error("division by zero");
  } catch (...) {
    pd::encode_reply_error(out, id);
  }
  return out;
}

std::exception_ptr decode_error(bytes b) {
  pd::byte_reader r(b);
  pd::decoder d(r);
  return pd::decode_reply_error(d, "calc::divide", 4321);
}

TEST(ProtocolReply, ErrorRoundTrips) {
  const pd::byte_buffer out = domain_error_reply(9);
  const pd::frame_header h = header_of(out);
  EXPECT_EQ(h.kind, K::reply_error);
  EXPECT_EQ(h.id, 9u);
  const std::exception_ptr p = decode_error(body_of(out));
  ASSERT_NE(p, nullptr);
  try {
    std::rethrow_exception(p);
  } catch (const std::domain_error& e) {
    EXPECT_STREQ(e.what(), "division by zero");
    const procxy::remote_info* info = procxy::remote_info_of(e);
    ASSERT_NE(info, nullptr);
    EXPECT_EQ(info->method(), "calc::divide");
    EXPECT_EQ(info->pid(), 4321);
    EXPECT_EQ(info->type_name(), "std::domain_error");
  } catch (...) {
    ADD_FAILURE() << "not rebuilt as a std::domain_error";
  }
}

TEST(ProtocolReply, ErrorWithTrailingBytes) {
  const pd::byte_buffer out = domain_error_reply(1);
  expect_trailing_byte_rejected(body_of(out), decode_error, "procxy: trailing bytes after a reply");
}

TEST(ProtocolReply, TruncatedError) {
  const pd::byte_buffer out = domain_error_reply(1);
  expect_every_prefix_rejected(body_of(out), decode_error);
}

TEST(ProtocolReply, ErrorWithAnUnknownCode) {
  wire w;
  w.u8(200).str("t").str("w").str("");
  EXPECT_TRUE(
      throws_protocol_error([&] { decode_error(w.view()); }, "procxy: unknown exception code 200"));
}

// ---- shutdown, dispose -------------------------------------------------------------------------

TEST(ProtocolEmpty, RoundTrips) {
  for (K kind : {K::shutdown, K::dispose}) {
    pd::byte_buffer out;
    pd::encode_empty(out, kind);
    const pd::frame_header h = header_of(out);
    EXPECT_EQ(h.kind, kind);
    EXPECT_EQ(h.id, 0u);
    EXPECT_EQ(h.size, 0u);
    EXPECT_NO_THROW(pd::decode_empty(kind, body_of(out)));
  }
}

TEST(ProtocolEmpty, BodyIsRejected) {
  wire one;
  one.u8(0);
  EXPECT_TRUE(throws_protocol_error([&] { pd::decode_empty(K::shutdown, one.view()); },
                                    "procxy: shutdown message with a body"));
  wire more;
  more.u64(1).u64(2);
  EXPECT_TRUE(throws_protocol_error([&] { pd::decode_empty(K::dispose, more.view()); },
                                    "procxy: dispose message with a body"));
}

// ---- release -----------------------------------------------------------------------------------

std::vector<std::uint64_t> decode_release(bytes b) { return pd::decode_release(b); }

pd::byte_buffer release_of(const std::vector<std::uint64_t>& ids) {
  pd::byte_buffer out;
  pd::encode_release(out, ids);
  return out;
}

TEST(ProtocolRelease, RoundTrips) {
  for (const auto& ids :
       {std::vector<std::uint64_t>{}, std::vector<std::uint64_t>{42},
        std::vector<std::uint64_t>{1, 0, std::numeric_limits<std::uint64_t>::max(), 1}}) {
    const pd::byte_buffer out = release_of(ids);
    const pd::frame_header h = header_of(out);
    EXPECT_EQ(h.kind, K::release);
    EXPECT_EQ(h.id, 0u);
    EXPECT_EQ(h.size, 4 + 8 * ids.size());
    EXPECT_EQ(pd::decode_release(body_of(out)), ids);
  }
}

TEST(ProtocolRelease, WireLayout) {
  wire expected;
  expected.u32(2).u64(7).u64(0x8000000000000001u);
  EXPECT_EQ(vec(body_of(release_of({7, 0x8000000000000001u}))), expected.vec());
}

TEST(ProtocolRelease, TruncatedBodies) {
  const pd::byte_buffer out = release_of({3, 4, 5});
  expect_every_prefix_rejected(body_of(out), decode_release);
}

TEST(ProtocolRelease, CountLargerThanTheIdsPresent) {
  wire w;
  w.u32(3).u64(1).u64(2);
  EXPECT_TRUE(throws_protocol_error([&] { pd::decode_release(w.view()); },
                                    "count 3 exceeds the 16 bytes left"));
  wire none;
  none.u32(1);
  EXPECT_TRUE(throws_protocol_error([&] { pd::decode_release(none.view()); },
                                    "count 1 exceeds the 0 bytes left"));
}

TEST(ProtocolRelease, HugeCount) {
  wire w;
  w.u32(0xFFFFFFFFu).u64(1);
  EXPECT_TRUE(throws_protocol_error([&] { pd::decode_release(w.view()); },
                                    "count 4294967295 exceeds the 8 bytes left"));
}

TEST(ProtocolRelease, TrailingBytes) {
  expect_trailing_byte_rejected(body_of(release_of({9})), decode_release,
                                "procxy: trailing bytes after release");
  wire extra_id;  // a whole id more than the count says
  extra_id.u32(1).u64(1).u64(2);
  EXPECT_TRUE(throws_protocol_error([&] { pd::decode_release(extra_id.view()); },
                                    "procxy: trailing bytes after release"));
}

// ---- subscribe ---------------------------------------------------------------------------------

pd::subscribe_message decode_subscribe(bytes b) { return pd::decode_subscribe(b); }

TEST(ProtocolSubscribe, RoundTrips) {
  for (bool on : {true, false}) {
    pd::byte_buffer out;
    pd::encode_subscribe(out, {0xabcdef0123456789u, on});
    const pd::frame_header h = header_of(out);
    EXPECT_EQ(h.kind, K::subscribe);
    EXPECT_EQ(h.id, 0u);
    EXPECT_EQ(h.size, 9u);
    const auto m = pd::decode_subscribe(body_of(out));
    EXPECT_EQ(m.event, 0xabcdef0123456789u);
    EXPECT_EQ(m.on, on);
  }
}

TEST(ProtocolSubscribe, WireLayout) {
  pd::byte_buffer out;
  pd::encode_subscribe(out, {3, true});
  wire on;
  on.u64(3).u8(1);
  EXPECT_EQ(vec(body_of(out)), on.vec());
  pd::encode_subscribe(out, {4, false});
  wire off;
  off.u64(4).u8(0);
  EXPECT_EQ(vec(body_of(out)), off.vec());
}

TEST(ProtocolSubscribe, OnMustBeZeroOrOne) {
  for (std::uint8_t on :
       {std::uint8_t{2}, std::uint8_t{3}, std::uint8_t{0x80}, std::uint8_t{0xff}}) {
    wire w;
    w.u64(1).u8(on);
    EXPECT_TRUE(throws_protocol_error([&] { pd::decode_subscribe(w.view()); },
                                      "procxy: malformed subscribe message"))
        << int{on};
  }
}

TEST(ProtocolSubscribe, TruncatedBodies) {
  wire w;
  w.u64(1).u8(1);
  expect_every_prefix_rejected(w.view(), decode_subscribe);
}

TEST(ProtocolSubscribe, TrailingBytes) {
  wire w;
  w.u64(1).u8(0);
  expect_trailing_byte_rejected(w.view(), decode_subscribe, "procxy: malformed subscribe message");
}

// ---- properties --------------------------------------------------------------------------------

std::vector<pd::property_value> decode_properties(bytes b) { return pd::decode_properties(b); }

TEST(ProtocolProperties, RoundTrips) {
  wire v1, v3;
  v1.u32(12345);
  for (int i = 0; i < 300; ++i) v3.u8(static_cast<std::uint8_t>(i));
  const std::vector<pd::property_value> values{
      {1, v1.view()}, {2, {}}, {std::numeric_limits<std::uint64_t>::max(), v3.view()}};
  pd::byte_buffer out;
  pd::encode_properties(out, values);
  const pd::frame_header h = header_of(out);
  EXPECT_EQ(h.kind, K::properties);
  EXPECT_EQ(h.id, 0u);
  EXPECT_EQ(h.size, 4 + 3 * 12 + 4 + 300u);

  const bytes body = body_of(out);
  const auto got = pd::decode_properties(body);
  ASSERT_EQ(got.size(), values.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].id, values[i].id) << i;
    EXPECT_EQ(vec(got[i].bytes), vec(values[i].bytes)) << i;
    // A view into the body, not a copy.
    if (!got[i].bytes.empty()) {
      EXPECT_GE(got[i].bytes.data(), body.data()) << i;
      EXPECT_LE(got[i].bytes.data() + got[i].bytes.size(), body.data() + body.size()) << i;
    }
  }
}

TEST(ProtocolProperties, NoValuesRoundTrips) {
  pd::byte_buffer out;
  pd::encode_properties(out, {});
  EXPECT_EQ(header_of(out).size, 4u);
  EXPECT_TRUE(pd::decode_properties(body_of(out)).empty());
}

TEST(ProtocolProperties, WireLayout) {
  wire value;
  value.u8(0xaa).u8(0xbb);
  const std::vector<pd::property_value> values{{5, value.view()}};
  pd::byte_buffer out;
  pd::encode_properties(out, values);
  wire expected;
  expected.u32(1).u64(5).u32(2).u8(0xaa).u8(0xbb);
  EXPECT_EQ(vec(body_of(out)), expected.vec());
}

TEST(ProtocolProperties, TruncatedBodies) {
  wire v;
  v.u32(7).u32(8);
  const std::vector<pd::property_value> values{{1, v.view()}, {2, v.view().first(3)}};
  pd::byte_buffer out;
  pd::encode_properties(out, values);
  expect_every_prefix_rejected(body_of(out), decode_properties);
}

TEST(ProtocolProperties, LengthRunsPastTheBody) {
  wire w;
  w.u32(1).u64(1).u32(100).chars("12345");
  EXPECT_TRUE(throws_protocol_error([&] { pd::decode_properties(w.view()); },
                                    "count 100 exceeds the 5 bytes left"));
  wire huge;
  huge.u32(1).u64(1).u32(0xFFFFFFFFu).chars("x");
  EXPECT_TRUE(throws_protocol_error([&] { pd::decode_properties(huge.view()); },
                                    "count 4294967295 exceeds the 1 bytes left"));
}

TEST(ProtocolProperties, CountPastTheValuesPresent) {
  wire w;  // says 2, holds one (17 bytes: fewer than the 24 two need)
  w.u32(2).u64(1).u32(5).chars("12345");
  EXPECT_TRUE(throws_protocol_error([&] { pd::decode_properties(w.view()); },
                                    "count 2 exceeds the 17 bytes left"));
  wire second_cut;  // says 2 and has the bytes for 2, but the second's length is cut
  second_cut.u32(2).u64(1).u32(12).chars("twelve bytes").u64(2).u16(0);
  EXPECT_TRUE(
      throws_protocol_error([&] { pd::decode_properties(second_cut.view()); }, "truncated value"));
}

TEST(ProtocolProperties, HugeCount) {
  wire w;
  w.u32(0xFFFFFFFFu).u64(1).u32(0);
  EXPECT_TRUE(throws_protocol_error([&] { pd::decode_properties(w.view()); },
                                    "count 4294967295 exceeds the 12 bytes left"));
}

TEST(ProtocolProperties, TrailingBytes) {
  wire w;
  w.u32(1).u64(1).u32(1).u8(7);
  EXPECT_NO_THROW(pd::decode_properties(w.view()));
  expect_trailing_byte_rejected(w.view(), decode_properties,
                                "procxy: trailing bytes after properties");
}

}  // namespace
