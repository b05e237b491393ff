// fuzz/make_corpus.cpp — writes the seed corpora of the fuzz targets:
//   make_corpus DIR      (normally: build/fuzz/make_corpus fuzz/corpus)
// replaces the files in DIR/frame, DIR/value and DIR/message with valid encodings of every
// selectable value type, of every exception kind, of frame streams and of every message kind's
// body, plus a few hand-made malformed inputs.
// Deterministic: the same sources give the same files. Seeds only start the search; libFuzzer
// finds the rest.
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <new>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "procxy/detail/buffer.hpp"
#include "procxy/detail/codec.hpp"
#include "procxy/detail/protocol.hpp"
#include "procxy/detail/remote_error.hpp"
#include "procxy/error.hpp"
#include "value_types.hpp"

namespace {

namespace pd = procxy::detail;
namespace pf = procxy_fuzz;
namespace fs = std::filesystem;
using blob = std::vector<std::byte>;

// Little-endian raw bytes, for hand-made inputs.
class raw {
 public:
  raw& u8(std::uint8_t v) { return put(v); }
  raw& u16(std::uint16_t v) { return put(v); }
  raw& u32(std::uint32_t v) { return put(v); }
  raw& u64(std::uint64_t v) { return put(v); }
  raw& str(std::string_view s) {
    u32(static_cast<std::uint32_t>(s.size()));
    for (char c : s) b_.push_back(static_cast<std::byte>(c));
    return *this;
  }
  raw& append(const blob& more) {
    b_.insert(b_.end(), more.begin(), more.end());
    return *this;
  }
  const blob& bytes() const { return b_; }
  operator const blob&() const { return b_; }  // NOLINT(google-explicit-constructor)

 private:
  template <class T>
  raw& put(T v) {
    for (std::size_t i = 0; i < sizeof(T); ++i)
      b_.push_back(static_cast<std::byte>((v >> (8 * i)) & 0xFFu));
    return *this;
  }
  blob b_;
};

blob to_blob(const pd::byte_buffer& b) { return blob(b.data(), b.data() + b.size()); }

template <class T>
blob encoded(const T& v) {
  pd::byte_buffer b;
  pd::encoder e(b);
  e(v);
  return to_blob(b);
}

// The reply_error payload the child would send for the exception `thrower` throws.
template <class F>
blob encoded_exception(F thrower) {
  pd::byte_buffer b;
  try {
    thrower();
  } catch (...) {
    pd::encoder e(b);
    pd::encode_current_exception(e);
  }
  return to_blob(b);
}

class corpus_dir {
 public:
  explicit corpus_dir(fs::path dir) : dir_(std::move(dir)) {
    fs::create_directories(dir_);
    for (const auto& e : fs::directory_iterator(dir_))
      if (e.is_regular_file()) fs::remove(e.path());
  }
  // One seed: the leading selector/control byte, then the bytes.
  void write(const std::string& name, std::uint8_t lead, const blob& bytes) {
    std::ofstream f(dir_ / name, std::ios::binary | std::ios::trunc);
    f.put(static_cast<char>(lead));
    f.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
    if (!f) throw std::runtime_error("make_corpus: cannot write " + (dir_ / name).string());
    ++count_;
  }
  std::size_t count() const { return count_; }

 private:
  fs::path dir_;
  std::size_t count_ = 0;
};

std::string two_digits(std::size_t n) { return (n < 10 ? "0" : "") + std::to_string(n); }

// ---- value_fuzz --------------------------------------------------------------------------------

struct value_seeds {
  corpus_dir& out;
  template <class T>
  void add(const std::string& label, const T& v) {
    constexpr std::size_t sel = pf::selector_of<T>();
    out.write(two_digits(sel) + "-" + label, static_cast<std::uint8_t>(sel), encoded(v));
  }
  void exception(const std::string& label, const blob& payload) {
    out.write(two_digits(pf::remote_error_selector) + "-error-" + label,
              static_cast<std::uint8_t>(pf::remote_error_selector), payload);
  }
  template <class T>
  void malformed(const std::string& label, const blob& bytes, const std::string& prefix = "bad-") {
    constexpr std::size_t sel = pf::selector_of<T>();
    out.write(prefix + two_digits(sel) + "-" + label, static_cast<std::uint8_t>(sel), bytes);
  }
  void malformed_exception(const std::string& label, const blob& bytes) {
    out.write("bad-" + two_digits(pf::remote_error_selector) + "-error-" + label,
              static_cast<std::uint8_t>(pf::remote_error_selector), bytes);
  }
};

// A category that is neither generic nor system (sent as `other`).
class fuzz_category : public std::error_category {
 public:
  const char* name() const noexcept override { return "fuzz"; }
  std::string message(int v) const override { return "fuzz error " + std::to_string(v); }
};

// Neither standard nor registered: crosses as procxy::remote_error.
struct custom_error : std::runtime_error {
  custom_error() : std::runtime_error("a custom error") {}
};

void make_value_corpus(corpus_dir& dir) {
  using namespace std::chrono_literals;
  value_seeds s{dir};
  s.add("int32", std::int32_t{-123456789});
  s.add("uint64-max", std::numeric_limits<std::uint64_t>::max());
  s.add("double", -0.5);
  s.add("double-nan", std::numeric_limits<double>::quiet_NaN());
  s.add("bool", true);
  s.add("enum", pf::color::blue);
  s.add("string-empty", std::string());
  s.add("string-utf8", std::string("h\xC3\xA9llo, w\xC3\xB6rld"));
  s.add("vector-double", std::vector<double>{1.5, -2.0, std::numeric_limits<double>::infinity()});
  s.add("vector-string", std::vector<std::string>{"a", "", "procxy"});
  s.add("vector-bool", std::vector<bool>{true, false, true});
  s.add("map", std::map<std::string, std::int32_t>{{"a", 1}, {"b", -2}, {"zz", 3}});
  s.add("unordered-map", std::unordered_map<std::string, std::int64_t>{{"x", 1}});
  s.add("set", std::set<std::int32_t>{-5, 0, 7});
  s.add("optional-empty", std::optional<std::vector<std::int32_t>>{});
  s.add("optional", std::optional<std::vector<std::int32_t>>{{1, 2, 3}});
  using var = std::variant<std::int32_t, std::string, std::vector<char>>;
  s.add("variant-0", var{42});
  s.add("variant-1", var{std::string("two")});
  s.add("variant-2", var{std::vector<char>{'x', 'y'}});
  s.add("tuple", std::tuple<std::int16_t, std::string, bool, float, std::pair<char, std::uint8_t>>{
                     -7, "t", false, 2.5f, {'c', 200}});
  pf::polyline line{{{1, 1.0}, {2, -2.0}}, "edge", pf::point{0, 0.5}, pf::color::green};
  s.add("aggregate",
        pf::drawing{
            {line, pf::polyline{}}, pf::point{3, 4.0}, std::vector<pf::polyline>{line}, true, 9});
  s.add("aggregate-string-tag", pf::drawing{{}, std::string("tag"), std::nullopt, false, 0});
  pf::account acc("\xC3\x85sa", -250, {"vip", ""}, pf::point{5, 6.0});
  s.add("described", pf::audited_account(acc, {{1, "open"}, {-2, "close"}}));
  s.add("described-vector", std::vector<pf::account>{acc, pf::account{}});
  s.add("array-string", std::array<std::string, 3>{"one", "", "three"});
  s.add("array-u16", std::array<std::uint16_t, 4>{1, 2, 65535, 0});
  s.add("chrono", std::tuple<std::chrono::nanoseconds, std::chrono::duration<double, std::milli>,
                             std::chrono::system_clock::time_point>{
                      -5ns, std::chrono::duration<double, std::milli>(0.125),
                      std::chrono::system_clock::time_point(86400s)});
  s.add("path", std::filesystem::path("/tmp/with spaces/f\xC3\xAFle.txt"));
  s.add("nested-vectors",
        std::vector<std::vector<std::vector<std::int32_t>>>{{{1, 2}, {}}, {}, {{3}}});
  s.add("zero-width",
        std::tuple<std::vector<std::tuple<>>, std::vector<std::array<std::int32_t, 0>>,
                   std::vector<pf::holds_nothing>, std::uint8_t>{
            std::vector<std::tuple<>>(3), std::vector<std::array<std::int32_t, 0>>(2),
            std::vector<pf::holds_nothing>(4), 7});
  s.add("zero-width-nested",
        std::vector<std::vector<std::tuple<>>>{{}, std::vector<std::tuple<>>(5)});
  s.add("deque-list", std::deque<std::list<std::string>>{{"a", "b"}, {}, {"c"}});
  s.add("map-of-points", std::map<std::int32_t, std::vector<pf::point>>{{1, {{1, 1.0}}}, {2, {}}});
  s.add("unordered-set", std::unordered_set<std::string>{"only"});
  s.add("empty-classes", std::vector<std::pair<pf::nothing_here, pf::described_nothing>>(2));

  // Descriptors: indices into the four descriptors value_fuzz decodes with (0xffffffff: empty).
  using fds_t = std::vector<std::optional<procxy::unique_fd>>;
  const std::uint32_t none = 0xffffffffu;
  s.malformed<fds_t>("fds", raw().u32(4).u8(1).u32(0).u8(0).u8(1).u32(none).u8(1).u32(3), "");
  s.malformed<fds_t>("fds-out-of-order", raw().u32(2).u8(1).u32(2).u8(1).u32(1), "");
  s.malformed<fds_t>("index-4", raw().u32(1).u8(1).u32(4));
  s.malformed<fds_t>("index-twice", raw().u32(2).u8(1).u32(1).u8(1).u32(1));
  s.malformed<fds_t>("index-huge", raw().u32(1).u8(1).u32(0x7fffffffu));
  using holders_t = std::vector<pf::with_descriptor>;
  s.malformed<holders_t>("fd-in-struct", raw().u32(2).str("a").u32(0).u8(1).str("").u32(none).u8(2),
                         "");
  s.malformed<holders_t>("fd-in-struct-out-of-range", raw().u32(1).str("a").u32(9).u8(1));

  // Exceptions, as encode_current_exception writes them.
  s.exception("invalid-argument",
              encoded_exception([] { throw std::invalid_argument("bad argument"); }));
  s.exception("runtime-error", encoded_exception([] { throw std::runtime_error("it failed"); }));
  s.exception("exception", encoded_exception([] { throw std::exception(); }));
  s.exception("bad-alloc", encoded_exception([] { throw std::bad_alloc(); }));
  s.exception("system-generic", encoded_exception([] {
                throw std::system_error(ENOENT, std::generic_category(), "open /x");
              }));
  s.exception("system-system", encoded_exception([] {
                throw std::system_error(EACCES, std::system_category(), "bind");
              }));
  s.exception("system-other", encoded_exception([] {
                static const fuzz_category cat;
                throw std::system_error(7, cat, "custom");
              }));
  s.exception("serialization",
              encoded_exception([] { throw procxy::serialization_error("too big"); }));
  s.exception("registered-members", encoded_exception([] { throw pf::quota_exceeded("ann", 10); }));
  s.exception("registered-what", encoded_exception([] {
                throw pf::bad_drawing("no lines", pf::failure_site{{{1, 2.0}}, std::string("here")},
                                      {{"lines", 0}});
              }));
  s.exception("other-type", encoded_exception([] { throw custom_error(); }));
  // A PROCXY_EXCEPTION payload (code 14, `registered`) of a type the parent does not know.
  s.exception("registered-unknown", raw()
                                        .u8(14)
                                        .str("app::quota")
                                        .str("over quota")
                                        .str("")
                                        .u64(0x0123456789abcdefu)
                                        .u32(9)
                                        .str("ann")
                                        .u8(10));
  s.exception("not-std", encoded_exception([] { throw 42; }));

  // Hand-made malformed inputs (the decoder must reject them with protocol_error).
  s.malformed<std::string>("count-beyond-input", raw().u32(0xFFFFFFFFu).u8('a').u8('b').u8('c'));
  s.malformed<std::vector<double>>("count-beyond-input", raw().u32(1000).u64(0).u64(0));
  s.malformed<bool>("byte-2", raw().u8(2));
  s.malformed<std::optional<std::vector<std::int32_t>>>("flag-2", raw().u8(2).u32(0));
  s.malformed<std::variant<std::int32_t, std::string, std::vector<char>>>("index-9",
                                                                          raw().u32(9).u32(1));
  s.malformed<std::vector<std::vector<std::tuple<>>>>("zero-width-over-cap",
                                                      raw().u32(1).u32(65537));
  // The cap on zero-width elements holds per message: nesting must not multiply it.
  s.malformed<std::vector<std::vector<std::tuple<>>>>(
      "zero-width-multiplied", raw().u32(5).u32(65536).u32(65536).u32(65536).u32(65536).u32(65536));
  using zero_width = std::tuple<std::vector<std::tuple<>>, std::vector<std::array<std::int32_t, 0>>,
                                std::vector<pf::holds_nothing>, std::uint8_t>;
  s.malformed<zero_width>("zero-width-summed", raw().u32(40000).u32(40000).u32(0).u8(1));
  s.malformed<pf::drawing>("monostate-byte-1", raw().u32(0).u32(0).u8(1).u8(0).u8(1).u16(0));
  // Not malformed, but not canonical: duplicate and unsorted keys (decoding normalises).
  s.malformed<std::map<std::string, std::int32_t>>(
      "duplicate-keys", raw().u32(3).str("b").u32(1).str("a").u32(2).str("b").u32(3), "odd-");
  // Accepted: the byte of an empty class is not checked (the encoder writes 0).
  s.malformed<std::vector<std::pair<pf::nothing_here, pf::described_nothing>>>(
      "empty-class-bytes", raw().u32(1).u8(7).u8(9), "odd-");
  s.malformed_exception("code-200", raw().u8(200).str("t").str("w").str(""));
  s.malformed_exception("registered-payload-too-long",
                        raw().u8(14).str("t").str("w").str("").u64(1).u32(1000).u8(0));
  s.malformed_exception("system-category-7",
                        raw().u8(12).str("t").str("w").str("").u32(2).u8(7).str("c"));
}

// ---- frame_fuzz --------------------------------------------------------------------------------

// The control byte: bits 0-1 pick max_message_size, bits 2-7 the chunk size minus one.
enum limit : std::uint8_t { limit_64 = 0, limit_4k = 1, limit_default = 2, limit_0 = 3 };
std::uint8_t control(limit l, std::uint8_t chunk) {
  return static_cast<std::uint8_t>(l | ((chunk - 1u) << 2));
}

raw& frame(raw& r, pd::message_kind k, std::uint64_t id, const blob& body) {
  r.u32(static_cast<std::uint32_t>(body.size()))
      .u8(static_cast<std::uint8_t>(k))
      .u8(0)
      .u16(0)
      .u64(id);
  return r.append(body);
}

void make_frame_corpus(corpus_dir& dir) {
  using K = pd::message_kind;
  const blob construct_body = raw().u64(0x1234567890abcdefu).append(encoded(std::int32_t{4}));
  const blob call_body =
      raw().u64(0xfedcba0987654321u).append(encoded(std::tuple<double, double>{5, 3}));
  const blob value_body = encoded(8.0);
  const blob error_body = encoded_exception([] { throw std::domain_error("division by zero"); });
  const blob empty;

  auto one = [&](const std::string& name, limit l, std::uint8_t chunk, K k, std::uint64_t id,
                 const blob& body) {
    raw r;
    dir.write(name, control(l, chunk), frame(r, k, id, body));
  };
  one("construct", limit_default, 1, K::construct, 0, construct_body);
  one("call", limit_4k, 3, K::call, 1, call_body);
  one("reply-value", limit_64, 16, K::reply_value, 1, value_body);
  one("reply-error", limit_default, 64, K::reply_error, 2, error_body);
  one("shutdown", limit_0, 5, K::shutdown, 0, empty);

  const blob hello_body = raw().u32(pd::protocol_version).str(pd::build_id());
  one("hello", limit_4k, 2, K::hello, 0, hello_body);

  raw session;  // a whole parent → child session
  frame(session, K::hello, 0, hello_body);
  frame(session, K::construct, 0, construct_body);
  for (std::uint64_t id = 1; id <= 3; ++id) frame(session, K::call, id, call_body);
  frame(session, K::shutdown, 0, empty);
  dir.write("session", control(limit_default, 7), session);

  raw replies;  // child → parent, with a trailing partial frame
  frame(replies, K::reply_value, 1, value_body);
  frame(replies, K::reply_error, 2, error_body);
  raw partial;
  frame(partial, K::reply_value, 3, value_body);
  blob half(partial.bytes().begin(), partial.bytes().begin() + 20);
  replies.append(half);
  dir.write("replies-then-partial", control(limit_4k, 13), replies);

  raw boundary;  // a body of exactly max_message_size
  frame(boundary, K::reply_value, 9, blob(64, std::byte{0x5a}));
  dir.write("body-at-limit", control(limit_64, 32), boundary);

  dir.write("header-cut", control(limit_default, 4),
            blob(session.bytes().begin(), session.bytes().begin() + 10));

  // Malformed headers.
  auto bad = [&](const std::string& name, limit l, std::uint32_t size, std::uint8_t kind,
                 std::uint8_t flags, std::uint16_t reserved) {
    raw r;
    r.u32(size).u8(kind).u8(flags).u16(reserved).u64(5);
    dir.write("bad-" + name, control(l, 9), r);
  };
  bad("kind-0", limit_default, 0, 0, 0, 0);
  // Descriptor counts (the u16 after the flags): allowed on a call up to the limit the control
  // byte picks (64 KiB: 2, 4 KiB: 64, default: 253, 0: none), never on a kind without values.
  {
    raw r;
    r.u32(static_cast<std::uint32_t>(call_body.size())).u8(2).u8(0).u16(2).u64(1);
    r.append(call_body);
    dir.write("call-with-fds", control(limit_64, 5), r);
  }
  bad("fds-over-limit", limit_64, 0, 2, 0, 3);
  bad("fds-on-shutdown", limit_default, 0, 5, 0, 1);
  bad("fds-on-reply-error", limit_4k, 0, 4, 0, 1);
  bad("kind-14", limit_default, 0, 14, 0, 0);
  bad("flags", limit_default, 0, 2, 1, 0);
  bad("reserved", limit_default, 0, 2, 0, 0x100);
  bad("size-over-64", limit_64, 65, 3, 0, 0);
  bad("size-over-default", limit_default, (256u << 20) + 1, 3, 0, 0);
  bad("size-max", limit_default, 0xFFFFFFFFu, 2, 0, 0);
  bad("body-with-limit-0", limit_0, 1, 5, 0, 0);

  raw good_then_bad;
  frame(good_then_bad, K::call, 1, call_body);
  good_then_bad.u32(0).u8(14).u8(0).u16(0).u64(2);
  dir.write("bad-after-good", control(limit_default, 2), good_then_bad);
}

// ---- message_fuzz ------------------------------------------------------------------------------

// The body of a frame an encoder of protocol.hpp built.
blob body_of(const pd::byte_buffer& frame) {
  return blob(frame.data() + pd::header_size, frame.data() + frame.size());
}

// The lead byte is the message kind whose decoder runs on the rest (message_fuzz.cpp).
void make_message_corpus(corpus_dir& dir) {
  using K = pd::message_kind;
  auto seed = [&](const std::string& name, K k, const blob& body) {
    dir.write(name, static_cast<std::uint8_t>(k), body);
  };
  pd::byte_buffer f;

  // hello
  pd::encode_hello(f);
  seed("hello", K::hello, body_of(f));
  pd::encode_hello(f, {1, "procxy 0.0.1 x86_64 LE LP64"});
  seed("hello-older", K::hello, body_of(f));
  pd::encode_hello(f, {pd::protocol_version, ""});
  seed("hello-empty-build", K::hello, body_of(f));
  pd::encode_hello(f, {pd::protocol_version, std::string(256, 'b')});
  seed("hello-build-256", K::hello, body_of(f));
  seed("hello-unprintable", K::hello,
       raw().u32(pd::protocol_version).str(std::string("a\n\x01\xff\0z", 6)));

  // release
  pd::encode_release(f, {});
  seed("release-none", K::release, body_of(f));
  const std::vector<std::uint64_t> ids{1, 0x8000000000000000u, 42};
  pd::encode_release(f, ids);
  seed("release", K::release, body_of(f));

  // subscribe
  pd::encode_subscribe(f, {7, true});
  seed("subscribe-on", K::subscribe, body_of(f));
  pd::encode_subscribe(f, {0xfedcba9876543210u, false});
  seed("subscribe-off", K::subscribe, body_of(f));

  // properties
  pd::encode_properties(f, {});
  seed("properties-none", K::properties, body_of(f));
  const blob v1 = encoded(std::int32_t{-5});
  const blob v3 = encoded(std::string("a property"));
  const std::vector<pd::property_value> values{{1, v1}, {2, {}}, {3, v3}};
  pd::encode_properties(f, values);
  seed("properties", K::properties, body_of(f));

  // shutdown, dispose, a void reply: no body
  seed("shutdown", K::shutdown, {});
  seed("dispose", K::dispose, {});
  seed("reply-void", K::reply_value, {});

  // reply_error
  seed("reply-error", K::reply_error,
       encoded_exception([] { throw std::domain_error("division by zero"); }));
  seed("reply-error-system", K::reply_error, encoded_exception([] {
         throw std::system_error(ENOENT, std::generic_category(), "open /x");
       }));
  // procxy's own spawn_error (no constructor for the request) crosses without a remote_info.
  seed("reply-error-spawn", K::reply_error,
       encoded_exception([] { throw procxy::spawn_error("procxy: no constructor"); }));

  // requests: the target, then the values
  auto request = [&](const std::string& name, K k) {
    pd::encode_request(f, k, 0x1234567890abcdefu, nullptr, std::int32_t{4}, std::string("arg"));
    seed(name, k, body_of(f));
  };
  request("construct", K::construct);
  request("call", K::call);
  request("invoke", K::invoke);
  request("notify", K::notify);
  request("event", K::event);

  // Hand-made malformed bodies (the decoder must reject them with protocol_error).
  seed("bad-hello-build-257", K::hello, raw().u32(pd::protocol_version).str(std::string(257, 'b')));
  seed("bad-hello-trailing", K::hello, raw().u32(pd::protocol_version).str("x").u8(0));
  seed("bad-hello-count-past-body", K::hello, raw().u32(pd::protocol_version).u32(1000).u8('a'));
  seed("bad-release-count-past-ids", K::release, raw().u32(3).u64(1).u64(2));
  seed("bad-release-huge-count", K::release, raw().u32(0xFFFFFFFFu).u64(1));
  seed("bad-release-trailing", K::release, raw().u32(1).u64(1).u8(0));
  seed("bad-subscribe-on-2", K::subscribe, raw().u64(1).u8(2));
  seed("bad-subscribe-trailing", K::subscribe, raw().u64(1).u8(1).u8(0));
  seed("bad-properties-length-past-body", K::properties, raw().u32(1).u64(1).u32(100).u8(1).u8(2));
  seed("bad-properties-count-past-values", K::properties, raw().u32(2).u64(1).u32(1).u8(9));
  seed("bad-properties-huge-count", K::properties, raw().u32(0xFFFFFFFFu).u64(1).u32(0));
  seed("bad-properties-trailing", K::properties, raw().u32(1).u64(1).u32(1).u8(9).u8(0));
  seed("bad-shutdown-with-body", K::shutdown, raw().u8(0));
  seed("bad-dispose-with-body", K::dispose, raw().u64(1));
  seed("bad-reply-void-with-body", K::reply_value, raw().u8(0));
  seed("bad-reply-error-trailing", K::reply_error,
       raw().append(encoded_exception([] { throw std::runtime_error("x"); })).u8(0));
  seed("bad-call-target-cut", K::call, raw().u32(1).u8(2));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr,
                 "usage: %s CORPUS_DIR   (writes CORPUS_DIR/frame, CORPUS_DIR/value and "
                 "CORPUS_DIR/message)\n",
                 argv[0]);
    return 2;
  }
  const fs::path root(argv[1]);
  corpus_dir value(root / "value");
  make_value_corpus(value);
  corpus_dir frames(root / "frame");
  make_frame_corpus(frames);
  corpus_dir message(root / "message");
  make_message_corpus(message);
  std::printf("make_corpus: %zu value seeds, %zu frame seeds, %zu message seeds in %s\n",
              value.count(), frames.count(), message.count(), root.c_str());
  return 0;
}
