// Codec-level tests: every transferable type round-trips through encoder/decoder without any
// process, the wire format matches codec.hpp's header comment, and hostile input (truncation,
// oversized counts, bad tag bytes, random corruption) fails with procxy::protocol_error.
#include "procxy/detail/codec.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <boost/describe/class.hpp>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <limits>
#include <list>
#include <map>
#include <new>
#include <optional>
#include <random>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

#include "procxy/detail/buffer.hpp"
#include "procxy/error.hpp"

// ---- allocation tracking (largest single operator new while armed) ---------------------------

namespace {
std::atomic<bool> g_tracking{false};
std::atomic<std::size_t> g_largest_alloc{0};

// Arms tracking for its lifetime; largest() is the biggest single allocation seen meanwhile.
class allocation_probe {
 public:
  allocation_probe() {
    g_largest_alloc.store(0);
    g_tracking.store(true);
  }
  ~allocation_probe() { g_tracking.store(false); }
  allocation_probe(const allocation_probe&) = delete;
  allocation_probe& operator=(const allocation_probe&) = delete;
  std::size_t largest() const { return g_largest_alloc.load(); }
};
}  // namespace

// Out of line so the compiler does not pair an inlined free() with a new-expression.
[[gnu::noinline]] static void* tracked_malloc(std::size_t n) {
  if (g_tracking.load(std::memory_order_relaxed)) {
    std::size_t cur = g_largest_alloc.load(std::memory_order_relaxed);
    while (n > cur && !g_largest_alloc.compare_exchange_weak(cur, n)) {
    }
  }
  return std::malloc(n == 0 ? 1 : n);
}
[[gnu::noinline]] static void tracked_free(void* p) noexcept { std::free(p); }

void* operator new(std::size_t n) {
  if (void* p = tracked_malloc(n)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) {
  if (void* p = tracked_malloc(n)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { tracked_free(p); }
void operator delete[](void* p) noexcept { tracked_free(p); }
void operator delete(void* p, std::size_t) noexcept { tracked_free(p); }
void operator delete[](void* p, std::size_t) noexcept { tracked_free(p); }

namespace {

namespace pd = procxy::detail;
using namespace std::chrono_literals;

// ---- helpers ---------------------------------------------------------------------------------

template <class T>
pd::byte_buffer encode(const T& v) {
  pd::byte_buffer b;
  pd::encoder e(b);
  e(v);
  return b;
}

template <class T>
T decode_span(std::span<const std::byte> bytes) {
  pd::byte_reader r(bytes);
  pd::decoder d(r);
  T v = d.get<T>();
  if (!r.at_end()) ADD_FAILURE() << r.remaining() << " bytes left after decoding";
  return v;
}

template <class T>
T decode(const pd::byte_buffer& b) {
  return decode_span<T>(b.view());
}

template <class T>
T round_trip(const T& v) {
  return decode<T>(encode(v));
}

// Builds raw wire bytes by hand (for hostile input).
class wire {
 public:
  wire& u8(std::uint8_t v) { return put(v); }
  wire& u32(std::uint32_t v) { return put(v); }
  wire& i32(std::int32_t v) { return put(v); }
  wire& bytes(std::string_view s) {
    for (char c : s) bytes_.push_back(static_cast<std::byte>(c));
    return *this;
  }
  std::span<const std::byte> view() const { return bytes_; }
  std::size_t size() const { return bytes_.size(); }

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

std::vector<std::uint8_t> bytes_of(const pd::byte_buffer& b) {
  std::vector<std::uint8_t> out(b.size());
  if (b.size() != 0) std::memcpy(out.data(), b.data(), b.size());
  return out;
}

// ---- value types used below ------------------------------------------------------------------

enum class Small : std::uint8_t { zero = 0, max = 255 };
enum class Wide : std::int64_t {
  lowest = std::numeric_limits<std::int64_t>::min(),
  highest = std::numeric_limits<std::int64_t>::max()
};
enum Plain { plain_a, plain_b = 1000 };
enum Legacy : short { legacy_neg = -32768, legacy_pos = 32767 };

struct Point {
  int x;
  double y;
  bool operator==(const Point&) const = default;
};
struct Line {
  Point a;
  Point b;
  std::string label;
  bool operator==(const Line&) const = default;
};
struct Empty {
  bool operator==(const Empty&) const = default;
};
struct HoldsEmpty {
  Empty e;
  int after;
  bool operator==(const HoldsEmpty&) const = default;
};
struct WithContainers {
  std::vector<Point> points;
  std::map<std::string, std::vector<int>> index;
  std::optional<Line> line;
  std::variant<int, std::string> tag;
  std::set<std::string> names;
  bool operator==(const WithContainers&) const = default;
};
struct Level3 {
  std::vector<Line> lines;
  bool operator==(const Level3&) const = default;
};
struct Level2 {
  Level3 inner;
  std::optional<Level3> maybe;
  bool operator==(const Level2&) const = default;
};
struct Level1 {
  Level2 inner;
  std::vector<Level3> pair;  // (std::array<Level3, 2> here ICEs g++ 12 inside Boost.PFR)
  bool operator==(const Level1&) const = default;
};

// BOOST_DESCRIBE_CLASS with private members (not an aggregate).
class Account {
 public:
  Account() = default;
  Account(std::string owner, long long cents, std::vector<std::string> tags)
      : owner_(std::move(owner)), cents_(cents), tags_(std::move(tags)) {}
  const std::string& owner() const { return owner_; }
  long long cents() const { return cents_; }
  bool operator==(const Account&) const = default;

 private:
  std::string owner_;
  long long cents_ = 0;
  std::vector<std::string> tags_;
  BOOST_DESCRIBE_CLASS(Account, (), (), (), (owner_, cents_, tags_))
};

// BOOST_DESCRIBE_STRUCT on a non-aggregate struct (it has constructors).
struct Vec3 {
  Vec3() = default;
  Vec3(double px, double py, double pz, std::string u) : x(px), y(py), z(pz), unit(std::move(u)) {}
  double x = 0, y = 0, z = 0;
  std::string unit;
  bool operator==(const Vec3&) const = default;
};
BOOST_DESCRIBE_STRUCT(Vec3, (), (x, y, z, unit))

// Described members go in the description's order, and undescribed members do not cross.
struct Partial {
  std::int32_t a = 0;
  std::int32_t skipped = 0;
  std::int32_t c = 0;
};
BOOST_DESCRIBE_STRUCT(Partial, (), (c, a))

struct EmptyDescribed {
  EmptyDescribed() {}
  bool operator==(const EmptyDescribed&) const = default;
};
BOOST_DESCRIBE_STRUCT(EmptyDescribed, (), ())

// A described class whose base is described too.
class BaseRecord {
 public:
  int id = 0;
  bool operator==(const BaseRecord&) const = default;
  BOOST_DESCRIBE_CLASS(BaseRecord, (), (id), (), ())
};
class DerivedRecord : public BaseRecord {
 public:
  std::string name;
  bool operator==(const DerivedRecord&) const = default;
  BOOST_DESCRIBE_CLASS(DerivedRecord, (BaseRecord), (name), (), ())
};

struct HoldsOnlyEmptyTuple {
  std::tuple<> nothing;
  bool operator==(const HoldsOnlyEmptyTuple&) const = default;
};

// ---- arithmetic types --------------------------------------------------------------------------

template <class T>
class CodecArithmetic : public ::testing::Test {};

using ArithmeticTypes =
    ::testing::Types<bool, char, signed char, unsigned char, wchar_t, char8_t, char16_t, char32_t,
                     short, unsigned short, int, unsigned, long, unsigned long, long long,
                     unsigned long long, float, double, long double, Small, Wide, Legacy>;

struct ArithmeticNames {
  template <class T>
  static std::string GetName(int) {
    if constexpr (std::is_same_v<T, bool>)
      return "bool";
    else if constexpr (std::is_same_v<T, char>)
      return "char";
    else if constexpr (std::is_same_v<T, signed char>)
      return "schar";
    else if constexpr (std::is_same_v<T, unsigned char>)
      return "uchar";
    else if constexpr (std::is_same_v<T, wchar_t>)
      return "wchar_t";
    else if constexpr (std::is_same_v<T, char8_t>)
      return "char8_t";
    else if constexpr (std::is_same_v<T, char16_t>)
      return "char16_t";
    else if constexpr (std::is_same_v<T, char32_t>)
      return "char32_t";
    else if constexpr (std::is_same_v<T, short>)
      return "short";
    else if constexpr (std::is_same_v<T, unsigned short>)
      return "ushort";
    else if constexpr (std::is_same_v<T, int>)
      return "int";
    else if constexpr (std::is_same_v<T, unsigned>)
      return "uint";
    else if constexpr (std::is_same_v<T, long>)
      return "long";
    else if constexpr (std::is_same_v<T, unsigned long>)
      return "ulong";
    else if constexpr (std::is_same_v<T, long long>)
      return "llong";
    else if constexpr (std::is_same_v<T, unsigned long long>)
      return "ullong";
    else if constexpr (std::is_same_v<T, float>)
      return "float";
    else if constexpr (std::is_same_v<T, double>)
      return "double";
    else if constexpr (std::is_same_v<T, long double>)
      return "long_double";
    else if constexpr (std::is_same_v<T, Small>)
      return "scoped_enum_u8";
    else if constexpr (std::is_same_v<T, Wide>)
      return "scoped_enum_i64";
    else
      return "unscoped_enum_short";
  }
};
TYPED_TEST_SUITE(CodecArithmetic, ArithmeticTypes, ArithmeticNames);

TYPED_TEST(CodecArithmetic, RoundTripsMinMaxLowestAndZeroInFixedWidth) {
  using T = TypeParam;
  std::vector<T> values;
  if constexpr (std::is_enum_v<T>) {
    using U = std::underlying_type_t<T>;
    // Enumerators and values between them that name no enumerator.
    for (U u : {std::numeric_limits<U>::min(), std::numeric_limits<U>::max(), U{0}, U{1}, U{77}})
      values.push_back(static_cast<T>(u));
  } else {
    values = {std::numeric_limits<T>::min(), std::numeric_limits<T>::max(),
              std::numeric_limits<T>::lowest(), T{}};
  }
  for (const T& v : values) {
    auto b = encode(v);
    EXPECT_EQ(b.size(), sizeof(T));
    T out = decode<T>(b);
    EXPECT_TRUE(out == v);
  }
}

// ---- floating point ----------------------------------------------------------------------------

template <class F>
void check_float_edges() {
  using L = std::numeric_limits<F>;
  F nan = round_trip(L::quiet_NaN());
  EXPECT_TRUE(std::isnan(nan));
  EXPECT_TRUE(std::isnan(round_trip(L::signaling_NaN())));
  EXPECT_TRUE(std::isnan(round_trip(-L::quiet_NaN())));
  EXPECT_EQ(round_trip(L::infinity()), L::infinity());
  EXPECT_EQ(round_trip(-L::infinity()), -L::infinity());
  F neg_zero = round_trip(F(-0.0));
  EXPECT_EQ(neg_zero, F(0));
  EXPECT_TRUE(std::signbit(neg_zero));
  EXPECT_FALSE(std::signbit(round_trip(F(0.0))));
  EXPECT_EQ(round_trip(L::denorm_min()), L::denorm_min());
  EXPECT_EQ(std::fpclassify(round_trip(L::denorm_min())), FP_SUBNORMAL);
  EXPECT_EQ(round_trip(-L::denorm_min()), -L::denorm_min());
  EXPECT_EQ(round_trip(L::min() / F(4)), L::min() / F(4));
  EXPECT_EQ(round_trip(L::epsilon()), L::epsilon());
  EXPECT_EQ(round_trip(F(1) / F(3)), F(1) / F(3));
}

TEST(Codec, RoundTripsNaNAndInfinities) {
  check_float_edges<float>();
  check_float_edges<double>();
  check_float_edges<long double>();
}

TEST(Codec, PreservesNaNPayloadBits) {
  const auto d = std::bit_cast<double>(std::uint64_t{0xfff8'0000'dead'beefull});
  ASSERT_TRUE(std::isnan(d));
  EXPECT_EQ(std::bit_cast<std::uint64_t>(round_trip(d)), 0xfff8'0000'dead'beefull);
  const auto f = std::bit_cast<float>(std::uint32_t{0x7fc0'1234u});
  ASSERT_TRUE(std::isnan(f));
  EXPECT_EQ(std::bit_cast<std::uint32_t>(round_trip(f)), 0x7fc0'1234u);
}

TEST(Codec, RoundTripsBoolAsOneByteZeroOrOne) {
  EXPECT_EQ(bytes_of(encode(true)), std::vector<std::uint8_t>{1});
  EXPECT_EQ(bytes_of(encode(false)), std::vector<std::uint8_t>{0});
  EXPECT_TRUE(round_trip(true));
  EXPECT_FALSE(round_trip(false));
}

TEST(Codec, RoundTripsEveryCharValue) {
  for (int i = std::numeric_limits<char>::min(); i <= std::numeric_limits<char>::max(); ++i) {
    const char c = static_cast<char>(i);
    EXPECT_EQ(round_trip(c), c);
  }
}

TEST(Codec, RoundTripsEnumsScopedAndUnscoped) {
  EXPECT_EQ(round_trip(Small::max), Small::max);
  EXPECT_EQ(round_trip(Wide::lowest), Wide::lowest);
  EXPECT_EQ(round_trip(Wide::highest), Wide::highest);
  EXPECT_EQ(round_trip(plain_b), plain_b);
  EXPECT_EQ(round_trip(legacy_neg), legacy_neg);
  EXPECT_EQ(encode(Small::max).size(), 1u);
  EXPECT_EQ(encode(Wide::lowest).size(), 8u);
  EXPECT_EQ(encode(plain_b).size(), sizeof(Plain));
  EXPECT_EQ(encode(legacy_pos).size(), 2u);
  EXPECT_EQ(round_trip(std::byte{0xff}), std::byte{0xff});
}

// ---- strings -----------------------------------------------------------------------------------

TEST(Codec, RoundTripsEmptyString) {
  EXPECT_EQ(round_trip(std::string()), "");
  EXPECT_EQ(encode(std::string()).size(), 4u);
}

TEST(Codec, RoundTripsTenMegabyteString) {
  std::string big(10u << 20, '\0');
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('a' + i % 26);
  auto b = encode(big);
  EXPECT_EQ(b.size(), 4 + big.size());
  EXPECT_EQ(decode<std::string>(b), big);
}

TEST(Codec, RoundTripsUnicodeAndEmbeddedNuls) {
  const std::string unicode =
      "h\xC3\xA9llo w\xC3\xB6rld \xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E "
      "\xF0\x9F\x8E\x89";  // héllo wörld 日本語 🎉
  EXPECT_EQ(round_trip(unicode), unicode);
  EXPECT_EQ(encode(unicode).size(), 4 + unicode.size());
  const std::string nuls("a\0b\0\0c\0", 7);
  ASSERT_EQ(nuls.size(), 7u);
  EXPECT_EQ(round_trip(nuls), nuls);
  const std::string only_nul(1, '\0');
  EXPECT_EQ(round_trip(only_nul), only_nul);
  std::string all_bytes;
  for (int i = 0; i < 256; ++i) all_bytes.push_back(static_cast<char>(i));
  EXPECT_EQ(round_trip(all_bytes), all_bytes);
}

TEST(Codec, StringViewAndConstCharPointerEncodeLikeStringAndDecodeAsString) {
  const std::string s = "view \xE2\x9C\x93 of text";
  const std::string_view sv = s;
  const char* cs = s.c_str();
  EXPECT_EQ(bytes_of(encode(sv)), bytes_of(encode(s)));
  EXPECT_EQ(bytes_of(encode(cs)), bytes_of(encode(s)));
  EXPECT_EQ(decode<std::string>(encode(sv)), s);
  EXPECT_EQ(decode<std::string>(encode(cs)), s);
  const std::string_view with_nul("x\0y", 3);
  EXPECT_EQ(decode<std::string>(encode(with_nul)), std::string("x\0y", 3));
  EXPECT_EQ(decode<std::string>(encode(std::string_view())), "");
  const char* empty = "";
  EXPECT_EQ(decode<std::string>(encode(empty)), "");
}

// A null const char* must not crash the encoder (it may encode "" or throw a procxy::error).
TEST(Codec, NullConstCharPointerDoesNotCrashTheEncoder) {
  EXPECT_EXIT(
      {
        const char* null = nullptr;
        try {
          auto b = encode(null);
          std::_Exit(b.size() == 4 ? 0 : 2);
        } catch (const procxy::error&) {
          std::_Exit(0);
        }
      },
      ::testing::ExitedWithCode(0), "");
}

// ---- sequences ---------------------------------------------------------------------------------

TEST(Codec, RoundTripsEmptyAndLargeVectors) {
  EXPECT_EQ(round_trip(std::vector<int>{}), std::vector<int>{});
  EXPECT_EQ(encode(std::vector<int>{}).size(), 4u);
  std::vector<std::int64_t> large(1'000'000);
  for (std::size_t i = 0; i < large.size(); ++i)
    large[i] = static_cast<std::int64_t>(i * 2654435761u) - 12345;
  auto b = encode(large);
  EXPECT_EQ(b.size(), 4 + 8 * large.size());
  EXPECT_EQ(decode<std::vector<std::int64_t>>(b), large);
  std::vector<double> doubles{0.0, -0.0, 1e308, -1e-308, std::numeric_limits<double>::infinity()};
  EXPECT_EQ(round_trip(doubles), doubles);
  std::vector<double> with_nan{std::numeric_limits<double>::quiet_NaN(), 1.0};
  auto nan_out = round_trip(with_nan);
  ASSERT_EQ(nan_out.size(), 2u);
  EXPECT_TRUE(std::isnan(nan_out[0]));
  EXPECT_EQ(nan_out[1], 1.0);
}

TEST(Codec, RoundTripsVectorOfBool) {
  EXPECT_EQ(round_trip(std::vector<bool>{}), std::vector<bool>{});
  std::vector<bool> bits;
  for (int i = 0; i < 1001; ++i) bits.push_back(i % 3 == 0 || i % 7 == 0);
  auto b = encode(bits);
  EXPECT_EQ(b.size(), 4 + bits.size());  // one byte per bool, no bit packing
  EXPECT_EQ(decode<std::vector<bool>>(b), bits);
}

TEST(Codec, RoundTripsVectorOfStrings) {
  std::vector<std::string> v{
      "", "a", std::string(1000, 'z'), std::string("\0\0", 2), "\xE2\x82\xAC uro", ""};
  EXPECT_EQ(round_trip(v), v);
  EXPECT_EQ(round_trip(std::vector<std::string>{}), std::vector<std::string>{});
  EXPECT_EQ(round_trip(std::vector<std::string>(5)), std::vector<std::string>(5));
}

TEST(Codec, RoundTripsVectorsNestedFourDeep) {
  using V4 = std::vector<std::vector<std::vector<std::vector<int>>>>;
  V4 v{{},
       {{}},
       {{{}}},
       {{{1, 2, 3}, {}}, {{std::numeric_limits<int>::min()}}},
       {{{4}}, {{5, 6}, {7}, {}}}};
  EXPECT_EQ(round_trip(v), v);
  EXPECT_EQ(round_trip(V4{}), V4{});
  using S4 = std::vector<std::vector<std::vector<std::vector<std::string>>>>;
  S4 s{{{{"a", ""}, {}}, {{"deep"}}}, {}};
  EXPECT_EQ(round_trip(s), s);
}

TEST(Codec, RoundTripsOneMebibyteByteVector) {
  std::vector<std::byte> bytes(1u << 20);
  for (std::size_t i = 0; i < bytes.size(); ++i)
    bytes[i] = static_cast<std::byte>((i * 7 + i / 256) & 0xff);
  auto b = encode(bytes);
  EXPECT_EQ(b.size(), 4 + bytes.size());
  EXPECT_EQ(decode<std::vector<std::byte>>(b), bytes);
  EXPECT_EQ(round_trip(std::vector<std::byte>{}), std::vector<std::byte>{});
}

TEST(Codec, RoundTripsStdArrayWithoutCount) {
  std::array<int, 5> a{std::numeric_limits<int>::min(), -1, 0, 1, std::numeric_limits<int>::max()};
  EXPECT_EQ(round_trip(a), a);
  EXPECT_EQ(encode(a).size(), 20u);
  std::array<std::string, 3> s{"", "two", std::string(3, '\0')};
  EXPECT_EQ(round_trip(s), s);
  std::array<bool, 3> bits{true, false, true};
  EXPECT_EQ(round_trip(bits), bits);
  EXPECT_EQ(encode(bits).size(), 3u);
  std::array<double, 0> none{};
  EXPECT_EQ(encode(none).size(), 0u);
  EXPECT_EQ(round_trip(none), none);
  std::array<std::array<std::uint8_t, 2>, 2> grid{{{1, 2}, {3, 4}}};
  EXPECT_EQ(round_trip(grid), grid);
}

TEST(Codec, RoundTripsDequeAndList) {
  std::deque<double> d{1.5, -2.5, std::numeric_limits<double>::max()};
  EXPECT_EQ(round_trip(d), d);
  EXPECT_EQ(round_trip(std::deque<std::string>{"x", "", "yz"}),
            (std::deque<std::string>{"x", "", "yz"}));
  EXPECT_EQ(round_trip(std::deque<bool>{true, false}), (std::deque<bool>{true, false}));
  std::list<std::string> l{"first", "", "\xE2\x98\x83", "last"};
  EXPECT_EQ(round_trip(l), l);
  EXPECT_EQ(round_trip(std::list<int>{}), std::list<int>{});
  std::list<std::vector<int>> lv{{1}, {}, {2, 3}};
  EXPECT_EQ(round_trip(lv), lv);
}

// ---- associative containers --------------------------------------------------------------------

TEST(Codec, RoundTripsMap) {
  std::map<std::string, int> m{{"", 0}, {"a", -1}, {"\xC3\xA9", std::numeric_limits<int>::max()}};
  EXPECT_EQ(round_trip(m), m);
  EXPECT_EQ(round_trip(std::map<int, int>{}), (std::map<int, int>{}));
  std::map<int, std::vector<std::string>> mv{{1, {"x", "y"}}, {2, {}}, {-3, {""}}};
  EXPECT_EQ(round_trip(mv), mv);
}

TEST(Codec, RoundTripsMultimapKeepingDuplicatesInOrder) {
  std::multimap<int, std::string> mm{{1, "a"}, {1, "b"}, {1, "a"}, {0, "z"}, {2, ""}, {1, "c"}};
  auto out = round_trip(mm);
  EXPECT_EQ(out.size(), 6u);
  EXPECT_EQ(out.count(1), 4u);
  EXPECT_EQ(out, mm);  // same order of equal keys too
  std::multiset<int> ms{3, 3, 3, 1};
  EXPECT_EQ(round_trip(ms), ms);
  std::unordered_multimap<std::string, int> umm{{"k", 1}, {"k", 2}, {"j", 3}};
  EXPECT_EQ(round_trip(umm), umm);
}

TEST(Codec, RoundTripsUnorderedMapAndSets) {
  std::unordered_map<std::string, double> um;
  for (int i = 0; i < 500; ++i) um["key" + std::to_string(i)] = i * 0.25;
  EXPECT_EQ(round_trip(um), um);
  std::set<int> s{std::numeric_limits<int>::min(), 0, 42};
  EXPECT_EQ(round_trip(s), s);
  std::set<std::string> ss{"", "b", "a"};
  EXPECT_EQ(round_trip(ss), ss);
  std::unordered_set<std::string> us{"x", "y", "", "\xF0\x9F\x98\x80"};
  EXPECT_EQ(round_trip(us), us);
  std::unordered_multiset<int> ums{1, 1, 2};
  EXPECT_EQ(round_trip(ums), ums);
}

// ---- pair, tuple, optional, variant ------------------------------------------------------------

TEST(Codec, RoundTripsPairAndTuple) {
  std::pair<int, std::string> p{-7, "seven"};
  EXPECT_EQ(round_trip(p), p);
  std::tuple<int, double, std::string, bool, char> t{1, 2.5, "three", true, 'x'};
  EXPECT_EQ(round_trip(t), t);
  EXPECT_EQ(round_trip(std::tuple<>{}), std::tuple<>{});
  EXPECT_EQ(encode(std::tuple<>{}).size(), 0u);
  std::tuple<std::pair<int, int>, std::tuple<std::string>, std::tuple<>> nested{{1, 2}, {"x"}, {}};
  EXPECT_EQ(round_trip(nested), nested);
}

TEST(Codec, RoundTripsOptionalEmptyEngagedAndNested) {
  EXPECT_EQ(round_trip(std::optional<int>{}), std::nullopt);
  EXPECT_EQ(round_trip(std::optional<int>{0}), 0);
  EXPECT_EQ(round_trip(std::optional<std::string>{""}), std::optional<std::string>{""});
  using OO = std::optional<std::optional<int>>;
  EXPECT_EQ(round_trip(OO{}), OO{});
  EXPECT_EQ(round_trip(OO{std::optional<int>{}}), OO{std::optional<int>{}});
  EXPECT_TRUE(round_trip(OO{std::optional<int>{}}).has_value());
  EXPECT_EQ(round_trip(OO{5}), OO{5});
  std::optional<std::vector<std::optional<bool>>> ov{{true, std::nullopt, false}};
  EXPECT_EQ(round_trip(ov), ov);
}

TEST(Codec, RoundTripsEveryVariantAlternativeAndMonostate) {
  using V = std::variant<std::monostate, int, double, std::string, std::vector<int>>;
  for (const V& v : {V{}, V{-1}, V{2.5}, V{std::string("s")}, V{std::vector<int>{1, 2}}}) {
    V out = round_trip(v);
    EXPECT_EQ(out.index(), v.index());
    EXPECT_EQ(out, v);
  }
  using Same = std::variant<int, int>;
  Same second{std::in_place_index<1>, 9};
  Same out = round_trip(second);
  EXPECT_EQ(out.index(), 1u);
  EXPECT_EQ(std::get<1>(out), 9);
  EXPECT_EQ(round_trip(std::monostate{}), std::monostate{});
  using NV = std::variant<std::optional<std::string>, std::variant<bool, Point>>;
  NV nv{std::variant<bool, Point>{Point{1, 2.0}}};
  EXPECT_EQ(round_trip(nv), nv);
}

// ---- chrono ------------------------------------------------------------------------------------

template <class D>
void check_duration() {
  for (D d : {D::min(), D::max(), D::zero(), D(-1), D(1), D(-123456)}) {
    EXPECT_EQ(round_trip(d), d);
    EXPECT_EQ(encode(d).size(), sizeof(typename D::rep));
  }
}

TEST(Codec, RoundTripsDurationsFromNanosecondsToHoursIncludingNegative) {
  check_duration<std::chrono::nanoseconds>();
  check_duration<std::chrono::microseconds>();
  check_duration<std::chrono::milliseconds>();
  check_duration<std::chrono::seconds>();
  check_duration<std::chrono::minutes>();
  check_duration<std::chrono::hours>();
  check_duration<std::chrono::days>();
  std::chrono::duration<double, std::milli> fractional(-0.125);
  EXPECT_EQ(round_trip(fractional), fractional);
  std::chrono::duration<float> inf(std::numeric_limits<float>::infinity());
  EXPECT_EQ(round_trip(inf), inf);
}

TEST(Codec, RoundTripsSystemAndSteadyClockTimePoints) {
  const auto now = std::chrono::system_clock::now();
  EXPECT_EQ(round_trip(now), now);
  const auto steady = std::chrono::steady_clock::now();
  EXPECT_EQ(round_trip(steady), steady);
  const std::chrono::system_clock::time_point before_epoch{-std::chrono::hours(24 * 365 * 100)};
  EXPECT_EQ(round_trip(before_epoch), before_epoch);
  EXPECT_EQ(round_trip(std::chrono::system_clock::time_point::min()),
            std::chrono::system_clock::time_point::min());
  EXPECT_EQ(round_trip(std::chrono::steady_clock::time_point::max()),
            std::chrono::steady_clock::time_point::max());
  const auto secs = std::chrono::time_point_cast<std::chrono::seconds>(now);
  EXPECT_EQ(round_trip(secs), secs);
  EXPECT_EQ(encode(secs).size(), 8u);
}

// ---- filesystem::path --------------------------------------------------------------------------

TEST(Codec, RoundTripsPathsWithSpacesAndUnicode) {
  for (const char* s : {"", "/", "relative/file.txt", "/tmp/with spaces/file name .txt",
                        "/tmp/\xC3\xBCn\xC3\xAF"
                        "c\xC3\xB6"
                        "d\xC3\xA9/\xE6\x97\xA5\xE6\x9C\xAC.txt",
                        "./../trailing/", "//double//slashes"}) {
    const std::filesystem::path p(s);
    EXPECT_EQ(round_trip(p).native(), p.native()) << s;
  }
  EXPECT_EQ(encode(std::filesystem::path("abc")).size(), 4u + 3u);
}

// ---- aggregates and described classes ----------------------------------------------------------

TEST(Codec, RoundTripsPlainAggregates) {
  Point p{-3, 0.5};
  EXPECT_EQ(round_trip(p), p);
  EXPECT_EQ(encode(p).size(), 4u + 8u);  // fields only, no padding
  Line l{{1, 2}, {3, 4}, "diag"};
  EXPECT_EQ(round_trip(l), l);
}

TEST(Codec, RoundTripsAggregatesContainingContainers) {
  WithContainers w{{{1, 1.5}, {2, -2.5}},
                   {{"a", {1, 2}}, {"", {}}},
                   Line{{0, 0}, {1, 1}, "\xC3\xA9"},
                   std::string("tag"),
                   {"n1", "n2"}};
  EXPECT_EQ(round_trip(w), w);
  WithContainers blank{};
  EXPECT_EQ(round_trip(blank), blank);
  std::vector<WithContainers> many(3, w);
  many[1].line.reset();
  many[2].tag = 7;
  EXPECT_EQ(round_trip(many), many);
}

TEST(Codec, RoundTripsDeeplyNestedAggregates) {
  Level3 l3{{Line{{1, 1}, {2, 2}, "a"}, Line{{3, 3}, {4, 4}, ""}}};
  Level1 v{{l3, std::nullopt}, {l3, Level3{}}};
  v.inner.maybe = l3;
  EXPECT_EQ(round_trip(v), v);
}

TEST(Codec, RoundTripsEmptyStructAsOneByte) {
  EXPECT_EQ(encode(Empty{}).size(), 1u);
  EXPECT_EQ(round_trip(Empty{}), Empty{});
  HoldsEmpty h{{}, 42};
  EXPECT_EQ(encode(h).size(), 1u + 4u);
  EXPECT_EQ(round_trip(h), h);
  std::vector<Empty> empties(5);
  EXPECT_EQ(encode(empties).size(), 4u + 5u);
  EXPECT_EQ(round_trip(empties), empties);
}

TEST(Codec, RoundTripsDescribedClassWithPrivateMembers) {
  Account a("\xC3\x85sa", std::numeric_limits<long long>::min(), {"vip", ""});
  Account out = round_trip(a);
  EXPECT_EQ(out, a);
  EXPECT_EQ(out.owner(), a.owner());
  EXPECT_EQ(out.cents(), std::numeric_limits<long long>::min());
  EXPECT_EQ(round_trip(Account{}), Account{});
  std::map<std::string, Account> by_name{{"x", a}, {"y", Account{}}};
  EXPECT_EQ(round_trip(by_name), by_name);
}

TEST(Codec, RoundTripsDescribedStruct) {
  Vec3 v(1.0, -0.0, std::numeric_limits<double>::denorm_min(), "m/s");
  EXPECT_EQ(round_trip(v), v);
  EXPECT_EQ(encode(v).size(), 3u * 8u + 4u + 3u);
  std::optional<std::vector<Vec3>> ov{{v, Vec3{}}};
  EXPECT_EQ(round_trip(ov), ov);
}

TEST(Codec, DescribedStructSendsOnlyDescribedMembersInDescriptionOrder) {
  Partial p;
  p.a = 1;
  p.skipped = 99;
  p.c = 3;
  auto b = encode(p);
  ASSERT_EQ(b.size(), 8u);
  EXPECT_EQ(bytes_of(b), (std::vector<std::uint8_t>{3, 0, 0, 0, 1, 0, 0, 0}));
  Partial out = decode<Partial>(b);
  EXPECT_EQ(out.a, 1);
  EXPECT_EQ(out.c, 3);
  EXPECT_EQ(out.skipped, 0);
}

TEST(Codec, RoundTripsEmptyDescribedStructAsOneByte) {
  EXPECT_EQ(encode(EmptyDescribed{}).size(), 1u);
  EXPECT_EQ(round_trip(EmptyDescribed{}), EmptyDescribed{});
  EXPECT_EQ(round_trip(std::vector<EmptyDescribed>(3)).size(), 3u);
}

// A described class whose description names a described base must carry the base's members too;
// otherwise they are silently dropped (the receiver sees default values).
TEST(Codec, RoundTripsDescribedClassIncludingItsDescribedBase) {
  DerivedRecord d;
  d.id = 7;
  d.name = "seven";
  DerivedRecord out = round_trip(d);
  EXPECT_EQ(out.name, "seven");
  EXPECT_EQ(out.id, 7) << "the described base's member did not cross";
}

// An aggregate whose only field is an empty tuple encodes as zero bytes, so a container of them
// must still decode.
TEST(Codec, RoundTripsVectorOfAggregatesHoldingOnlyAnEmptyTuple) {
  std::vector<HoldsOnlyEmptyTuple> v(3);
  EXPECT_NO_THROW({ EXPECT_EQ(round_trip(v), v); });
}

// ---- the documented wire format ----------------------------------------------------------------

TEST(Codec, EncodedSizesMatchTheDocumentedFormat) {
  EXPECT_EQ(encode(std::pair<double, double>{1, 2}).size(), 16u);
  EXPECT_EQ(encode(std::tuple<double, double>{1, 2}).size(), 16u);
  struct TwoDoubles {
    double a, b;
  };
  EXPECT_EQ(encode(TwoDoubles{1, 2}).size(), 16u);
  EXPECT_EQ(encode(std::string("hello")).size(), 4u + 5u);
  EXPECT_EQ(encode(std::tuple<std::int32_t, char>{1, 'c'}).size(), 5u);  // no padding
  EXPECT_EQ(encode(std::optional<std::int32_t>{}).size(), 1u);
  EXPECT_EQ(encode(std::optional<std::int32_t>{1}).size(), 5u);
  EXPECT_EQ(encode(std::variant<std::int32_t, double>{2.0}).size(), 4u + 8u);
  EXPECT_EQ(encode(std::monostate{}).size(), 1u);
  EXPECT_EQ(encode(std::vector<std::int32_t>{1, 2, 3}).size(), 4u + 12u);
  EXPECT_EQ(encode(std::array<std::int32_t, 3>{1, 2, 3}).size(), 12u);
  EXPECT_EQ(encode(std::map<std::int32_t, std::int32_t>{{1, 2}, {3, 4}}).size(), 4u + 16u);
  EXPECT_EQ(encode(std::chrono::milliseconds(5)).size(), 8u);
  EXPECT_EQ(encode(std::chrono::system_clock::now()).size(), 8u);
  EXPECT_EQ(encode(std::vector<bool>{true, false, true}).size(), 4u + 3u);
  EXPECT_EQ(encode(std::vector<std::string>{"ab", ""}).size(), 4u + (4u + 2u) + 4u);
}

TEST(Codec, CountsAndIndexesAreLittleEndianU32) {
  EXPECT_EQ(bytes_of(encode(std::string("hi"))), (std::vector<std::uint8_t>{2, 0, 0, 0, 'h', 'i'}));
  EXPECT_EQ(bytes_of(encode(std::variant<std::uint8_t, std::uint16_t>{std::uint16_t{0x0102}})),
            (std::vector<std::uint8_t>{1, 0, 0, 0, 0x02, 0x01}));
  EXPECT_EQ(bytes_of(encode(std::optional<std::uint8_t>{7})), (std::vector<std::uint8_t>{1, 7}));
  EXPECT_EQ(bytes_of(encode(std::int32_t{-2})),
            (std::vector<std::uint8_t>{0xfe, 0xff, 0xff, 0xff}));
  EXPECT_EQ(bytes_of(encode(std::vector<std::uint16_t>(300)))[0], 44);  // 300 = 0x012c
  EXPECT_EQ(bytes_of(encode(std::vector<std::uint16_t>(300)))[1], 1);
}

// ---- hostile input -----------------------------------------------------------------------------

using Nested =
    std::tuple<std::map<std::string,
                        std::vector<std::optional<std::variant<std::monostate, int, std::string>>>>,
               Line, Account, Vec3, std::filesystem::path, std::vector<bool>, std::deque<double>,
               std::set<std::string>, std::chrono::nanoseconds, std::array<std::string, 2>, Empty,
               std::pair<bool, std::list<std::string>>, std::unordered_map<int, std::string>,
               EmptyDescribed, std::vector<std::byte>>;

Nested sample_nested() {
  using V = std::variant<std::monostate, int, std::string>;
  return Nested{
      {{"k1", {V{}, std::nullopt, V{5}, V{std::string("five")}}}, {"", {}}, {"k2", {std::nullopt}}},
      Line{{1, 2}, {3, 4}, "line"},
      Account("owner", 1234, {"t1", "t2"}),
      Vec3(1, 2, 3, "u"),
      std::filesystem::path("/a b/\xC3\xA9"),
      {true, false, true},
      {1.0, 2.0},
      {"s1", "s2"},
      std::chrono::nanoseconds(-5),
      {"x", ""},
      Empty{},
      {true, {"l1", "", "l3"}},
      {{1, "one"}},
      EmptyDescribed{},
      {std::byte{1}, std::byte{2}}};
}

TEST(Codec, TruncatedAtEveryByteOffsetThrowsProtocolError) {
  const Nested value = sample_nested();
  auto b = encode(value);
  ASSERT_GT(b.size(), 100u);
  EXPECT_EQ(decode<Nested>(b), value);
  for (std::size_t k = 0; k < b.size(); ++k) {
    EXPECT_THROW((void)decode_span<Nested>(std::span<const std::byte>(b.data(), k)),
                 procxy::protocol_error)
        << "prefix of " << k << " of " << b.size() << " bytes";
  }
}

TEST(Codec, RandomlyCorruptedInputEitherDecodesOrThrowsProtocolError) {
  const Nested value = sample_nested();
  auto b = encode(value);
  std::mt19937 rng(12345);
  std::vector<std::byte> copy(b.data(), b.data() + b.size());
  int decoded = 0, rejected = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    std::vector<std::byte> m = copy;
    const int flips = 1 + static_cast<int>(rng() % 3);
    for (int f = 0; f < flips; ++f) m[rng() % m.size()] = static_cast<std::byte>(rng() & 0xff);
    allocation_probe probe;
    try {
      pd::byte_reader r(m);
      pd::decoder d(r);
      (void)d.get<Nested>();
      ++decoded;
    } catch (const procxy::protocol_error&) {
      ++rejected;
    } catch (const std::exception& e) {
      ADD_FAILURE() << "iteration " << iter << " threw a non-protocol_error: " << e.what();
    }
    // No allocation may exceed what the bytes could describe (a generous multiple of them).
    EXPECT_LT(probe.largest(), 64 * m.size() + 4096) << "iteration " << iter;
  }
  EXPECT_GT(rejected, 0);
  EXPECT_GT(decoded + rejected, 0);
}

template <class T>
void expect_oversized_count_rejected_without_allocating(std::uint32_t count, std::size_t tail) {
  wire w;
  w.u32(count);
  for (std::size_t i = 0; i < tail; ++i) w.u8(0);
  allocation_probe probe;
  EXPECT_THROW((void)decode_span<T>(w.view()), procxy::protocol_error);
  EXPECT_LT(probe.largest(), 4096u)
      << "allocated " << probe.largest() << " bytes for a " << w.size() << "-byte message";
}

TEST(Codec, CountLargerThanRemainingBytesThrowsBeforeAllocating) {
  // vector<string> claiming four billion elements in a 10-byte buffer.
  expect_oversized_count_rejected_without_allocating<std::vector<std::string>>(4'000'000'000u, 6);
  expect_oversized_count_rejected_without_allocating<std::string>(0xffffffffu, 6);
  expect_oversized_count_rejected_without_allocating<std::vector<std::int64_t>>(0xffffffffu, 6);
  expect_oversized_count_rejected_without_allocating<std::vector<std::byte>>(0xffffffffu, 6);
  expect_oversized_count_rejected_without_allocating<std::vector<bool>>(0xffffffffu, 6);
  expect_oversized_count_rejected_without_allocating<std::vector<Empty>>(0xffffffffu, 6);
  expect_oversized_count_rejected_without_allocating<std::vector<EmptyDescribed>>(0xffffffffu, 6);
  expect_oversized_count_rejected_without_allocating<std::vector<std::monostate>>(0xffffffffu, 6);
  expect_oversized_count_rejected_without_allocating<std::deque<double>>(0xffffffffu, 6);
  expect_oversized_count_rejected_without_allocating<std::list<std::string>>(0xffffffffu, 6);
  expect_oversized_count_rejected_without_allocating<std::map<int, int>>(0xffffffffu, 6);
  expect_oversized_count_rejected_without_allocating<std::unordered_map<std::string, int>>(
      0xffffffffu, 6);
  expect_oversized_count_rejected_without_allocating<std::set<std::string>>(0xffffffffu, 6);
  expect_oversized_count_rejected_without_allocating<std::vector<std::optional<int>>>(0xffffffffu,
                                                                                      6);
  expect_oversized_count_rejected_without_allocating<std::vector<std::variant<int, double>>>(
      0xffffffffu, 6);
  expect_oversized_count_rejected_without_allocating<std::vector<std::filesystem::path>>(
      0xffffffffu, 6);
  expect_oversized_count_rejected_without_allocating<std::filesystem::path>(0xffffffffu, 6);
  // Exactly one byte short: 3 int32 claimed, 11 bytes present.
  expect_oversized_count_rejected_without_allocating<std::vector<std::int32_t>>(3, 11);
  // Element minimum sizes compound: 2 Points (12 bytes each) in 23 bytes.
  expect_oversized_count_rejected_without_allocating<std::vector<Point>>(2, 23);
}

TEST(Codec, NestedCountLargerThanRemainingBytesThrowsBeforeAllocating) {
  wire w;
  w.u32(1).u32(0xffffffffu).u32(0);  // vector<vector<int>>: one inner vector claiming 2^32-1 ints
  allocation_probe probe;
  EXPECT_THROW((void)decode_span<std::vector<std::vector<int>>>(w.view()), procxy::protocol_error);
  EXPECT_LT(probe.largest(), 4096u);
}

// Elements that encode as zero bytes (std::tuple<>) must not let a 4-byte message make the
// decoder build up to 2^32-1 elements: "every count is checked ... before anything is
// allocated". (1 Mi here keeps the failure cheap; 2^32-1 would need gigabytes.)
TEST(Codec, CountOfZeroWidthElementsIsBoundedBeforeAllocating) {
  wire w;
  w.u32(1u << 20);
  allocation_probe probe;
  EXPECT_THROW((void)decode_span<std::vector<std::tuple<>>>(w.view()), procxy::protocol_error);
  EXPECT_LT(probe.largest(), 4096u) << "decoded from a 4-byte message";
}

TEST(Codec, BoolByteOtherThanZeroOrOneThrowsProtocolError) {
  for (std::uint8_t b : {std::uint8_t{2}, std::uint8_t{0x80}, std::uint8_t{0xff}}) {
    wire w;
    w.u8(b);
    EXPECT_THROW((void)decode_span<bool>(w.view()), procxy::protocol_error);
  }
  wire in_vector;
  in_vector.u32(3).u8(1).u8(0).u8(2);
  EXPECT_THROW((void)decode_span<std::vector<bool>>(in_vector.view()), procxy::protocol_error);
  wire in_array;
  in_array.u8(0).u8(7);
  EXPECT_THROW((void)(decode_span<std::array<bool, 2>>(in_array.view())), procxy::protocol_error);
}

TEST(Codec, OptionalFlagOtherThanZeroOrOneThrowsProtocolError) {
  wire w;
  w.u8(2).i32(5);
  EXPECT_THROW((void)decode_span<std::optional<int>>(w.view()), procxy::protocol_error);
  wire nested;
  nested.u8(1).u8(0xff);
  EXPECT_THROW((void)decode_span<std::optional<std::optional<int>>>(nested.view()),
               procxy::protocol_error);
}

TEST(Codec, VariantIndexOutOfRangeThrowsProtocolError) {
  using V = std::variant<int, double, std::string>;
  for (std::uint32_t index : {3u, 4u, 0x80000000u, 0xffffffffu}) {
    wire w;
    w.u32(index).i32(0).i32(0);
    EXPECT_THROW((void)decode_span<V>(w.view()), procxy::protocol_error) << index;
  }
  wire ok;
  ok.u32(2).u32(1).bytes("z");
  EXPECT_EQ(decode_span<V>(ok.view()), V{std::string("z")});
}

TEST(Codec, NonzeroMonostateByteThrowsProtocolError) {
  wire w;
  w.u8(1);
  EXPECT_THROW((void)decode_span<std::monostate>(w.view()), procxy::protocol_error);
  wire in_variant;
  in_variant.u32(0).u8(0x10);
  EXPECT_THROW((void)(decode_span<std::variant<std::monostate, int>>(in_variant.view())),
               procxy::protocol_error);
}

TEST(Codec, EmptyBufferThrowsProtocolErrorForEveryKind) {
  const std::span<const std::byte> none;
  EXPECT_THROW((void)decode_span<int>(none), procxy::protocol_error);
  EXPECT_THROW((void)decode_span<bool>(none), procxy::protocol_error);
  EXPECT_THROW((void)decode_span<double>(none), procxy::protocol_error);
  EXPECT_THROW((void)decode_span<std::string>(none), procxy::protocol_error);
  EXPECT_THROW((void)decode_span<std::optional<int>>(none), procxy::protocol_error);
  EXPECT_THROW((void)decode_span<Empty>(none), procxy::protocol_error);
  EXPECT_THROW((void)decode_span<EmptyDescribed>(none), procxy::protocol_error);
  EXPECT_THROW((void)decode_span<std::monostate>(none), procxy::protocol_error);
  EXPECT_THROW((void)decode_span<std::chrono::seconds>(none), procxy::protocol_error);
  EXPECT_THROW((void)decode_span<Account>(none), procxy::protocol_error);
}

}  // namespace

namespace codec_budget {

// A hostile peer cannot make one message allocate more than a fixed multiple of its size: one
// byte per disengaged optional of an 800-byte array would otherwise buy 800x (issue 10, point 5).
TEST(Codec, OneMessageCannotAllocateMoreThanAFixedMultipleOfItsSize) {
  using big = std::vector<std::optional<std::array<double, 100>>>;
  wire w;
  w.u32(100'000);
  for (int i = 0; i < 100'000; ++i) w.u8(0);  // 100 KB on the wire, 80 MB decoded
  allocation_probe probe;
  EXPECT_THROW((void)decode_span<big>(w.view()), procxy::protocol_error);
  EXPECT_LT(probe.largest(), 64 * w.size() + (64u << 10));
}

TEST(Codec, OrdinaryNestingStaysWithinTheAllocationBudget) {
  // Many empty strings: 4 bytes on the wire, 32 in memory each (8x) decode fine.
  std::vector<std::string> many(100'000);
  EXPECT_EQ(round_trip(many), many);
  std::map<int, int> m;
  for (int i = 0; i < 10'000; ++i) m[i] = i;
  EXPECT_EQ(round_trip(m), m);
}

}  // namespace codec_budget
