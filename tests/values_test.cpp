// The value kinds of codec_test.cpp, but through a real child process: an `Echo` object lives in
// a child spawned once per test suite and returns (or transforms) what it is sent.
#include <gtest/gtest.h>
#include <unistd.h>

#include <array>
#include <boost/describe/class.hpp>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <filesystem>
#include <future>
#include <limits>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

#include "procxy/procxy.hpp"

using namespace std::chrono_literals;

namespace values_test {

// ---- value types
// ---------------------------------------------------------------------------------

enum class Level : std::int16_t { low = -1, mid = 0, high = 32767 };
enum Color { red, green = 7, blue = 255 };

struct Ints {
  std::int8_t i8;
  std::uint8_t u8;
  std::int16_t i16;
  std::uint16_t u16;
  std::int32_t i32;
  std::uint32_t u32;
  std::int64_t i64;
  std::uint64_t u64;
  char c;
  signed char sc;
  unsigned char uc;
  wchar_t wc;
  char16_t c16;
  char32_t c32;
  bool b;
  bool operator==(const Ints&) const = default;
};

struct Floats {
  float f;
  double d;
  long double ld;
};

struct Point {
  int x;
  double y;
  bool operator==(const Point&) const = default;
};

struct Shape {  // nested aggregate with containers
  std::string name;
  std::vector<Point> outline;
  std::optional<Point> center;
  std::map<std::string, std::vector<Point>> layers;
  bool operator==(const Shape&) const = default;
};

struct Containers {
  std::deque<double> dq;
  std::list<std::string> ls;
  std::map<int, std::string> m;
  std::multimap<std::string, int> mm;
  std::unordered_map<std::string, std::vector<int>> um;
  std::set<std::string> s;
  std::unordered_set<int> us;
  std::pair<int, std::string> p;
  std::tuple<bool, std::string, double> t;
  bool operator==(const Containers&) const = default;
};

struct Empty {
  bool operator==(const Empty&) const = default;
};

struct Batch {
  std::vector<double> values;
  std::string label;
};
struct Summary {
  double sum;
  std::size_t count;
  std::string label;
};

class Account {  // BOOST_DESCRIBE_CLASS, private members
 public:
  Account() = default;
  Account(std::string owner, long long cents) : owner_(std::move(owner)), cents_(cents) {}
  const std::string& owner() const { return owner_; }
  long long cents() const { return cents_; }
  void deposit(long long c) {
    cents_ += c;
    history_.push_back(c);
  }
  const std::vector<long long>& history() const { return history_; }
  bool operator==(const Account&) const = default;

 private:
  std::string owner_;
  long long cents_ = 0;
  std::vector<long long> history_;
  BOOST_DESCRIBE_CLASS(Account, (), (), (), (owner_, cents_, history_))
};

struct Vec3 {  // BOOST_DESCRIBE_STRUCT on a non-aggregate
  Vec3() = default;
  Vec3(double px, double py, double pz) : x(px), y(py), z(pz) {}
  double x = 0, y = 0, z = 0;
  bool operator==(const Vec3&) const = default;
};
BOOST_DESCRIBE_STRUCT(Vec3, (), (x, y, z))

using Deep = std::vector<std::map<std::string, std::vector<std::optional<std::vector<int>>>>>;
using Var = std::variant<std::monostate, int, double, std::string, std::vector<int>, Point>;

// ---- the object in the child
// ---------------------------------------------------------------------

class Echo {
 public:
  int child_pid() const { return static_cast<int>(::getpid()); }

  // arithmetic
  bool flip(bool b) { return !b; }
  char next_char(char c) { return static_cast<char>(c + 1); }
  Ints ints(const Ints& v) { return v; }
  Floats floats(Floats v) { return v; }
  double dbl(double d) const { return d; }
  float flt(const float& f) { return f; }
  long double ldbl(long double d) { return d; }
  std::int64_t i64(std::int64_t v) { return v; }
  std::uint64_t u64(const std::uint64_t& v) { return v; }
  Level level(Level l) { return l; }
  Color color(const Color& c) { return c; }
  std::byte byte(std::byte b) { return ~b; }

  // strings
  std::string str(const std::string& s) { return s; }
  std::string reversed(std::string s) { return {s.rbegin(), s.rend()}; }
  std::string view_echo(std::string_view s) { return std::string(s); }
  std::size_t view_size(std::string_view s) { return s.size(); }
  std::string cstr_echo(const char* s) { return s; }
  std::size_t cstr_len(const char* s) { return std::strlen(s); }
  std::string concat(std::string_view a, const char* b, const std::string& c, std::string d) {
    return std::string(a) + "|" + b + "|" + c + "|" + d;
  }

  // sequences and containers
  std::vector<std::byte> bytes(const std::vector<std::byte>& b) { return b; }
  std::uint64_t checksum(const std::vector<std::byte>& b) {
    std::uint64_t h = 1469598103934665603ull;
    for (std::byte x : b) h = (h ^ static_cast<std::uint64_t>(x)) * 1099511628211ull;
    return h;
  }
  std::vector<std::string> strings(std::vector<std::string> v) { return v; }
  std::vector<bool> bools(const std::vector<bool>& v) { return v; }
  std::vector<double> doubles(std::vector<double> v) { return v; }
  Deep deep(const Deep& d) { return d; }
  Containers containers(const Containers& c) { return c; }
  std::array<int, 4> arr(std::array<int, 4> a) { return a; }
  std::multimap<int, std::string> mm(const std::multimap<int, std::string>& m) { return m; }
  std::map<std::string, int> histogram(const std::vector<std::string>& words) {
    std::map<std::string, int> h;
    for (const auto& w : words) ++h[w];
    return h;
  }
  std::tuple<> nothing(std::tuple<> t) { return t; }
  std::pair<int, std::string> swap_pair(std::pair<std::string, int> p) {
    return {p.second, p.first};
  }

  // aggregates and described classes
  Shape shape(const Shape& s) { return s; }
  Empty empty(Empty e) { return e; }
  Summary sum_batch(const Batch& b) {
    Summary s{0, b.values.size(), b.label};
    for (double v : b.values) s.sum += v;
    return s;
  }
  Account account(const Account& a) { return a; }
  Account deposit(Account a, long long cents) {
    a.deposit(cents);
    return a;
  }
  Vec3 vec(const Vec3& v) { return v; }
  Vec3 cross(Vec3 a, const Vec3& b) {
    return {a.y * b.z - a.z * b.y, a.z * b.x - a.x * b.z, a.x * b.y - a.y * b.x};
  }

  // optional and variant
  std::optional<std::string> opt(const std::optional<std::string>& o) { return o; }
  std::optional<std::optional<int>> opt2(std::optional<std::optional<int>> o) { return o; }
  Var var(const Var& v) { return v; }
  std::size_t var_index(Var v) { return v.index(); }

  // chrono
  std::chrono::nanoseconds ns(std::chrono::nanoseconds d) { return d; }
  std::chrono::hours hours(const std::chrono::hours& h) { return h; }
  std::chrono::milliseconds sum_ms(std::chrono::milliseconds a, std::chrono::seconds b) {
    return a + b;
  }
  std::chrono::system_clock::time_point sys(std::chrono::system_clock::time_point t) { return t; }
  std::chrono::steady_clock::time_point steady_later(const std::chrono::steady_clock::time_point& t,
                                                     std::chrono::nanoseconds by) {
    return t + by;
  }

  // filesystem
  std::filesystem::path path(const std::filesystem::path& p) { return p; }
  std::filesystem::path join(std::filesystem::path dir, const std::string& leaf) {
    return dir / leaf;
  }

  // overloads
  int scale(int x) { return x * 2; }
  double scale(double x) { return x * 0.5; }
  std::string scale(const std::string& s) { return s + s; }

  // not described: reachable only through call<&Echo::triple>
  int triple(int x) { return 3 * x; }
};

PROCXY_CLASS(Echo, child_pid, flip, next_char, ints, floats, dbl, flt, ldbl, i64, u64, level, color,
             byte, str, reversed, view_echo, view_size, cstr_echo, cstr_len, concat, bytes,
             checksum, strings, bools, doubles, deep, containers, arr, mm, histogram, nothing,
             swap_pair, shape, empty, sum_batch, account, deposit, vec, cross, opt, opt2, var,
             var_index, ns, hours, sum_ms, sys, steady_later, path, join,
             (scale, (int(int)), (double(double)), (std::string(const std::string&))));

// ---- fixture: one child per test suite
// -----------------------------------------------------------

// Destroys a proxy (terminate + reap) on a helper thread and reports whether that finished within
// `limit`. A hung destructor is left behind on its detached thread so the test run can go on and
// report the failure instead of hanging until the CTest timeout.
bool destroyed_within(std::unique_ptr<procxy::proxy<Echo>> p, std::chrono::seconds limit) {
  auto done = std::make_shared<std::promise<void>>();
  auto finished = done->get_future();
  std::thread([p = std::move(p), done]() mutable {
    p.reset();
    done->set_value();
  }).detach();
  return finished.wait_for(limit) == std::future_status::ready;
}

class Values : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    echo_ = std::make_unique<procxy::proxy<Echo>>(procxy::spawn<Echo>({.call_timeout = 60s}));
  }
  // A test that crashed the child (a library bug) must not fail every later test as well.
  void SetUp() override {
    if (!echo_->running())
      echo_ = std::make_unique<procxy::proxy<Echo>>(procxy::spawn<Echo>({.call_timeout = 60s}));
  }
  static void TearDownTestSuite() {
    EXPECT_TRUE(destroyed_within(std::move(echo_), 10s))
        << "destroying the suite's proxy<Echo> hung (see "
           "Values.ProxyDestroysPromptlyAfterLargeReply)";
  }
  static procxy::proxy<Echo>& echo() { return *echo_; }

 private:
  static inline std::unique_ptr<procxy::proxy<Echo>> echo_;
};

TEST_F(Values, EchoRunsInAChildProcess) {
  int child = echo().child_pid().get();
  EXPECT_NE(child, ::getpid());
  EXPECT_EQ(child, echo().pid());
}

// ---- arithmetic
// ------------------------------------------------------------------------------------

TEST_F(Values, RoundTripsNaNInfinitiesSignedZeroAndDenormals) {
  using D = std::numeric_limits<double>;
  EXPECT_TRUE(std::isnan(echo().dbl(D::quiet_NaN()).get()));
  EXPECT_TRUE(std::isnan(echo().dbl(-D::signaling_NaN()).get()));
  EXPECT_EQ(echo().dbl(D::infinity()).get(), D::infinity());
  EXPECT_EQ(echo().dbl(-D::infinity()).get(), -D::infinity());
  double nz = echo().dbl(-0.0).get();
  EXPECT_EQ(nz, 0.0);
  EXPECT_TRUE(std::signbit(nz));
  EXPECT_EQ(echo().dbl(D::denorm_min()).get(), D::denorm_min());
  EXPECT_EQ(echo().dbl(D::max()).get(), D::max());
  EXPECT_EQ(echo().dbl(D::lowest()).get(), D::lowest());

  using F = std::numeric_limits<float>;
  EXPECT_TRUE(std::isnan(echo().flt(F::quiet_NaN()).get()));
  EXPECT_EQ(echo().flt(-F::infinity()).get(), -F::infinity());
  EXPECT_EQ(echo().flt(F::denorm_min()).get(), F::denorm_min());
  EXPECT_TRUE(std::signbit(echo().flt(-0.0f).get()));

  using L = std::numeric_limits<long double>;
  EXPECT_TRUE(std::isnan(echo().ldbl(L::quiet_NaN()).get()));
  EXPECT_EQ(echo().ldbl(L::max()).get(), L::max());
  EXPECT_EQ(echo().ldbl(L::denorm_min()).get(), L::denorm_min());
  EXPECT_EQ(echo().ldbl(-L::infinity()).get(), -L::infinity());
}

TEST_F(Values, RoundTripsIntegerMinMaxAndZero) {
  EXPECT_EQ(echo().i64(std::numeric_limits<std::int64_t>::min()).get(),
            std::numeric_limits<std::int64_t>::min());
  EXPECT_EQ(echo().i64(std::numeric_limits<std::int64_t>::max()).get(),
            std::numeric_limits<std::int64_t>::max());
  EXPECT_EQ(echo().i64(0).get(), 0);
  EXPECT_EQ(echo().u64(std::numeric_limits<std::uint64_t>::max()).get(),
            std::numeric_limits<std::uint64_t>::max());
  EXPECT_TRUE(echo().flip(false).get());
  EXPECT_FALSE(echo().flip(true).get());
  EXPECT_EQ(echo().next_char('a').get(), 'b');
  EXPECT_EQ(echo().byte(std::byte{0x0f}).get(), std::byte{0xf0});

  Ints lo{std::numeric_limits<std::int8_t>::min(),
          0,
          std::numeric_limits<std::int16_t>::min(),
          0,
          std::numeric_limits<std::int32_t>::min(),
          0,
          std::numeric_limits<std::int64_t>::min(),
          0,
          std::numeric_limits<char>::min(),
          std::numeric_limits<signed char>::min(),
          0,
          std::numeric_limits<wchar_t>::min(),
          0,
          0,
          false};
  Ints hi{std::numeric_limits<std::int8_t>::max(),
          std::numeric_limits<std::uint8_t>::max(),
          std::numeric_limits<std::int16_t>::max(),
          std::numeric_limits<std::uint16_t>::max(),
          std::numeric_limits<std::int32_t>::max(),
          std::numeric_limits<std::uint32_t>::max(),
          std::numeric_limits<std::int64_t>::max(),
          std::numeric_limits<std::uint64_t>::max(),
          std::numeric_limits<char>::max(),
          std::numeric_limits<signed char>::max(),
          std::numeric_limits<unsigned char>::max(),
          std::numeric_limits<wchar_t>::max(),
          std::numeric_limits<char16_t>::max(),
          std::numeric_limits<char32_t>::max(),
          true};
  EXPECT_EQ(echo().ints(lo).get(), lo);
  EXPECT_EQ(echo().ints(hi).get(), hi);
  EXPECT_EQ(echo().ints(Ints{}).get(), Ints{});
}

TEST_F(Values, RoundTripsAggregateOfFloatEdgeValues) {
  Floats in{std::numeric_limits<float>::quiet_NaN(), -std::numeric_limits<double>::infinity(),
            std::numeric_limits<long double>::denorm_min()};
  Floats out = echo().floats(in).get();
  EXPECT_TRUE(std::isnan(out.f));
  EXPECT_EQ(out.d, -std::numeric_limits<double>::infinity());
  EXPECT_EQ(out.ld, std::numeric_limits<long double>::denorm_min());
}

TEST_F(Values, RoundTripsScopedAndUnscopedEnums) {
  EXPECT_EQ(echo().level(Level::low).get(), Level::low);
  EXPECT_EQ(echo().level(Level::high).get(), Level::high);
  EXPECT_EQ(echo().level(static_cast<Level>(1234)).get(), static_cast<Level>(1234));
  EXPECT_EQ(echo().color(blue).get(), blue);
  EXPECT_EQ(echo().color(green).get(), green);
}

// ---- strings
// -----------------------------------------------------------------------------------------

TEST_F(Values, RoundTripsStringsByValueAndConstReference) {
  const std::string unicode = "gr\xC3\xBC\xC3\x9F dich \xE4\xB8\x96\xE7\x95\x8C \xF0\x9F\x9A\x80";
  EXPECT_EQ(echo().str(unicode).get(), unicode);
  EXPECT_EQ(echo().str("").get(), "");
  const std::string nuls("\0a\0b\0", 5);
  EXPECT_EQ(echo().str(nuls).get(), nuls);
  EXPECT_EQ(echo().reversed("abc").get(), "cba");
  EXPECT_EQ(echo().reversed(std::string("\0x", 2)).get(), std::string("x\0", 2));
  std::string big(3u << 20, 'q');
  big[12345] = '\0';
  EXPECT_EQ(echo().str(big).get(), big);
}

TEST_F(Values, PassesStringViewAndConstCharPointerParameters) {
  EXPECT_EQ(echo().view_echo(std::string_view("a view")).get(), "a view");
  const std::string owner = "from a std::string";
  EXPECT_EQ(echo().view_echo(owner).get(), owner);
  EXPECT_EQ(echo().view_size(std::string_view("x\0y", 3)).get(), 3u);
  EXPECT_EQ(echo().view_echo(std::string_view()).get(), "");
  EXPECT_EQ(echo().cstr_echo("literal \xC3\xA9").get(), "literal \xC3\xA9");
  EXPECT_EQ(echo().cstr_echo(owner.c_str()).get(), owner);
  EXPECT_EQ(echo().cstr_len("").get(), 0u);
  EXPECT_EQ(echo().cstr_len("four").get(), 4u);
  std::string tmp = "short-lived";
  auto f = echo().cstr_echo(tmp.c_str());
  tmp.assign(tmp.size(), 'X');  // the argument was copied at the call
  EXPECT_EQ(f.get(), "short-lived");
  EXPECT_EQ(echo().concat("a", "b", "c", "d").get(), "a|b|c|d");
  EXPECT_EQ(echo().concat(std::string("1"), owner.c_str(), owner, std::string()).get(),
            "1|" + owner + "|" + owner + "|");
}

// ---- sequences and containers
// ------------------------------------------------------------------------

TEST_F(Values, RoundTripsEightMebibyteByteVector) {
  std::vector<std::byte> bytes(8u << 20);
  for (std::size_t i = 0; i < bytes.size(); ++i)
    bytes[i] = static_cast<std::byte>((i ^ (i >> 9)) & 0xff);
  EXPECT_EQ(echo().bytes(bytes).get(), bytes);
  std::uint64_t h = 1469598103934665603ull;
  for (std::byte x : bytes) h = (h ^ static_cast<std::uint64_t>(x)) * 1099511628211ull;
  EXPECT_EQ(echo().checksum(bytes).get(), h);
  EXPECT_EQ(echo().bytes({}).get(), std::vector<std::byte>{});
}

// ~proxy() after a reply of several MiB must not hang (terminate() joins the dispatch thread while
// holding the lock that thread's disconnect handler needs).
TEST_F(Values, ProxyDestroysPromptlyAfterLargeReply) {
  auto own = std::make_unique<procxy::proxy<Echo>>(procxy::spawn<Echo>({.call_timeout = 60s}));
  std::vector<std::byte> bytes(8u << 20, std::byte{0x5a});
  EXPECT_EQ(own->bytes(bytes).get().size(), bytes.size());
  EXPECT_TRUE(destroyed_within(std::move(own), 10s)) << "~proxy() did not return within 10 s";
}

TEST_F(Values, RoundTripsHundredThousandStrings) {
  std::vector<std::string> v;
  v.reserve(100'000);
  for (int i = 0; i < 100'000; ++i)
    v.push_back(i % 1000 == 0 ? std::string() : "item-" + std::to_string(i));
  auto out = echo().strings(v).get();
  ASSERT_EQ(out.size(), v.size());
  EXPECT_EQ(out, v);
  EXPECT_EQ(echo().strings({}).get(), std::vector<std::string>{});
}

TEST_F(Values, RoundTripsVectorsOfBoolAndDoubles) {
  std::vector<bool> bits;
  for (int i = 0; i < 999; ++i) bits.push_back(i % 5 == 1);
  EXPECT_EQ(echo().bools(bits).get(), bits);
  EXPECT_EQ(echo().bools({}).get(), std::vector<bool>{});
  auto d = echo().doubles({std::numeric_limits<double>::quiet_NaN(), -0.0, 1e-310}).get();
  ASSERT_EQ(d.size(), 3u);
  EXPECT_TRUE(std::isnan(d[0]));
  EXPECT_TRUE(std::signbit(d[1]));
  EXPECT_EQ(d[2], 1e-310);
}

TEST_F(Values, RoundTripsNestedContainers) {
  Deep d{{{"a", {std::nullopt, std::vector<int>{}, std::vector<int>{1, 2, 3}}}, {"", {}}},
         {},
         {{"\xC3\xA9", {std::vector<int>{std::numeric_limits<int>::min()}}}}};
  EXPECT_EQ(echo().deep(d).get(), d);
  EXPECT_EQ(echo().deep({}).get(), Deep{});
}

TEST_F(Values, RoundTripsEveryStandardContainer) {
  Containers c;
  c.dq = {1.5, -0.0, 3e300};
  c.ls = {"x", "", "z"};
  c.m = {{-1, "minus"}, {1, "plus"}};
  c.mm = {{"dup", 1}, {"dup", 2}, {"dup", 1}, {"solo", 3}};
  c.um = {{"k", {1, 2}}, {"", {}}};
  c.s = {"b", "a", ""};
  c.us = {1, 2, 3, -4};
  c.p = {7, "seven"};
  c.t = {true, "t", 2.25};
  EXPECT_EQ(echo().containers(c).get(), c);
  EXPECT_EQ(echo().containers({}).get(), Containers{});
  EXPECT_EQ(echo().arr({1, -2, 3, std::numeric_limits<int>::max()}).get(),
            (std::array<int, 4>{1, -2, 3, std::numeric_limits<int>::max()}));
  std::multimap<int, std::string> mm{{1, "a"}, {1, "b"}, {0, "c"}, {1, "a"}};
  EXPECT_EQ(echo().mm(mm).get(), mm);
  EXPECT_EQ(echo().nothing({}).get(), std::tuple<>{});
  EXPECT_EQ(echo().swap_pair({"k", 9}).get(), (std::pair<int, std::string>{9, "k"}));
}

TEST_F(Values, BracedInitializerArgumentsConvertToParameterTypes) {
  auto h = echo().histogram({"a", "b", "a", "\xE2\x82\xAC"}).get();
  EXPECT_EQ(h, (std::map<std::string, int>{{"a", 2}, {"b", 1}, {"\xE2\x82\xAC", 1}}));
  Summary s = echo().sum_batch({{1, 2, 3}, "x"}).get();
  EXPECT_EQ(s.sum, 6.0);
  EXPECT_EQ(s.count, 3u);
  EXPECT_EQ(s.label, "x");
  Summary empty = echo().sum_batch({}).get();
  EXPECT_EQ(empty.count, 0u);
  EXPECT_EQ(empty.label, "");
  EXPECT_EQ(echo().cross({1, 0, 0}, {0, 1, 0}).get(), Vec3(0, 0, 1));
}

// ---- aggregates and described classes
// -----------------------------------------------------------------

TEST_F(Values, RoundTripsNestedAggregates) {
  Shape s{"tri\xC3\xA1ngulo",
          {{0, 0.0}, {1, 0.5}, {std::numeric_limits<int>::min(), -1e300}},
          Point{1, 1.0 / 3.0},
          {{"base", {{0, 0}}}, {"", {}}}};
  EXPECT_EQ(echo().shape(s).get(), s);
  EXPECT_EQ(echo().shape({}).get(), Shape{});
  EXPECT_EQ(echo().empty({}).get(), Empty{});
}

TEST_F(Values, RoundTripsDescribedClassesWithPrivateMembers) {
  Account a("\xC3\x98ystein", std::numeric_limits<long long>::max() - 10);
  EXPECT_EQ(echo().account(a).get(), a);
  Account d = echo().deposit(a, 5).get();
  EXPECT_EQ(d.owner(), a.owner());
  EXPECT_EQ(d.cents(), std::numeric_limits<long long>::max() - 5);
  EXPECT_EQ(d.history(), std::vector<long long>{5});
  Account twice = echo().deposit(d, -7).get();
  EXPECT_EQ(twice.history(), (std::vector<long long>{5, -7}));
  EXPECT_EQ(echo().account({}).get(), Account{});
}

TEST_F(Values, RoundTripsDescribedStruct) {
  Vec3 v(1.5, -0.0, std::numeric_limits<double>::denorm_min());
  Vec3 out = echo().vec(v).get();
  EXPECT_EQ(out, v);
  EXPECT_TRUE(std::signbit(out.y));
}

// ---- optional and variant
// ---------------------------------------------------------------------------

TEST_F(Values, RoundTripsOptionals) {
  EXPECT_EQ(echo().opt(std::nullopt).get(), std::nullopt);
  EXPECT_EQ(echo().opt(std::string()).get(), std::optional<std::string>(""));
  EXPECT_EQ(echo().opt("set").get(), std::optional<std::string>("set"));
  using OO = std::optional<std::optional<int>>;
  EXPECT_EQ(echo().opt2(OO{}).get(), OO{});
  OO engaged_empty{std::optional<int>{}};
  OO out = echo().opt2(engaged_empty).get();
  ASSERT_TRUE(out.has_value());
  EXPECT_FALSE(out->has_value());
  EXPECT_EQ(echo().opt2(OO{-3}).get(), OO{-3});
}

TEST_F(Values, RoundTripsEveryVariantAlternative) {
  for (const Var& v : {Var{}, Var{0}, Var{-2.5}, Var{std::string("s")}, Var{std::vector<int>{1}},
                       Var{Point{3, 4.5}}}) {
    Var out = echo().var(v).get();
    EXPECT_EQ(out.index(), v.index());
    EXPECT_EQ(out, v);
    EXPECT_EQ(echo().var_index(v).get(), v.index());
  }
  Var nan_alt = echo().var(std::numeric_limits<double>::quiet_NaN()).get();
  ASSERT_EQ(nan_alt.index(), 2u);
  EXPECT_TRUE(std::isnan(std::get<double>(nan_alt)));
}

// ---- chrono
// ----------------------------------------------------------------------------------------

TEST_F(Values, RoundTripsDurationsIncludingNegativeAndExtremes) {
  EXPECT_EQ(echo().ns(-1ns).get(), -1ns);
  EXPECT_EQ(echo().ns(std::chrono::nanoseconds::min()).get(), std::chrono::nanoseconds::min());
  EXPECT_EQ(echo().ns(std::chrono::nanoseconds::max()).get(), std::chrono::nanoseconds::max());
  EXPECT_EQ(echo().ns(0ns).get(), 0ns);
  // Implicit lossless conversions to the parameter type, as on a direct call.
  EXPECT_EQ(echo().ns(3ms).get(), 3'000'000ns);
  EXPECT_EQ(echo().hours(-48h).get(), -48h);
  EXPECT_EQ(echo().hours(std::chrono::hours::max()).get(), std::chrono::hours::max());
  EXPECT_EQ(echo().sum_ms(-1500ms, 2s).get(), 500ms);
  EXPECT_EQ(echo().sum_ms(1min, -1min).get(), 0ms);
}

TEST_F(Values, RoundTripsSystemAndSteadyTimePoints) {
  const auto now = std::chrono::system_clock::now();
  EXPECT_EQ(echo().sys(now).get(), now);
  const std::chrono::system_clock::time_point before_epoch{-24h * 365 * 70};
  EXPECT_EQ(echo().sys(before_epoch).get(), before_epoch);
  EXPECT_EQ(echo().sys(std::chrono::system_clock::time_point::max()).get(),
            std::chrono::system_clock::time_point::max());
  const auto t = std::chrono::steady_clock::now();
  EXPECT_EQ(echo().steady_later(t, 1500ms).get(), t + 1500ms);
  EXPECT_EQ(echo().steady_later(t, -t.time_since_epoch()).get(),
            std::chrono::steady_clock::time_point{});
}

// ---- filesystem
// ------------------------------------------------------------------------------------

TEST_F(Values, RoundTripsPathsWithSpacesAndUnicode) {
  for (const char* s : {"", "/", "relative/x", "/tmp/a dir with  spaces/f i l e.txt",
                        "/tmp/\xE6\x96\x87\xE4\xBB\xB6/\xC3\xA9t\xC3\xA9 2024.csv", "trailing/"}) {
    std::filesystem::path p(s);
    EXPECT_EQ(echo().path(p).get().native(), p.native()) << s;
  }
  EXPECT_EQ(echo().join("/base dir", "\xC3\xBC.txt").get().native(), "/base dir/\xC3\xBC.txt");
}

// ---- overloads and the macro-free form ---------------------------------------------------------

TEST_F(Values, PicksOverloadByArgumentTypes) {
  EXPECT_EQ(echo().scale(21).get(), 42);                     // int(int)
  EXPECT_EQ(echo().scale(21.0).get(), 10.5);                 // double(double)
  EXPECT_EQ(echo().scale(std::string("ab")).get(), "abab");  // std::string(const std::string&)
  EXPECT_EQ(echo().scale("xy").get(), "xyxy");               // const char[3] -> std::string
  EXPECT_EQ(echo().scale(3.0f).get(), 1.5);                  // float promotes to double
  EXPECT_EQ(echo().scale('\x02').get(), 4);                  // char promotes to int
  static_assert(std::is_same_v<decltype(echo().scale(1)), procxy::future<int>>);
  static_assert(std::is_same_v<decltype(echo().scale(1.0)), procxy::future<double>>);
  static_assert(std::is_same_v<decltype(echo().scale("s")), procxy::future<std::string>>);
}

TEST_F(Values, MacroFreeCallByMemberPointer) {
  EXPECT_EQ(echo().call<&Echo::str>(std::string("via call")).get(), "via call");
  EXPECT_TRUE(std::isnan(echo().call<&Echo::dbl>(std::numeric_limits<double>::quiet_NaN()).get()));
  EXPECT_EQ(echo().call<&Echo::triple>(-7).get(), -21);  // not described at all
  EXPECT_EQ(echo().call<&Echo::view_size>(std::string_view("12345")).get(), 5u);
  EXPECT_EQ(echo().call<&Echo::cstr_echo>("c string").get(), "c string");
  EXPECT_EQ((echo().call<static_cast<int (Echo::*)(int)>(&Echo::scale)>(5).get()), 10);
  EXPECT_EQ((echo().call<static_cast<double (Echo::*)(double)>(&Echo::scale)>(5).get()), 2.5);
  Account a("call", 1);
  EXPECT_EQ(echo().call<&Echo::deposit>(a, 2).get().cents(), 3);
  EXPECT_EQ(echo().call<&Echo::sum_batch>(Batch{{0.5, 0.25}, "b"}).get().sum, 0.75);
}

TEST_F(Values, ManyCallsInFlightKeepTheirOwnValues) {
  std::vector<procxy::future<std::string>> fs;
  for (int i = 0; i < 200; ++i) fs.push_back(echo().str("value-" + std::to_string(i)));
  for (int i = 0; i < 200; ++i)
    EXPECT_EQ(fs[static_cast<std::size_t>(i)].get(), "value-" + std::to_string(i));
}

}  // namespace values_test
