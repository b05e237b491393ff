// expect: <compiles>
// Control: the same harness on valid code, so a failing case is known to fail for its own reason.
#include <procxy/procxy.hpp>

#include <chrono>
#include <functional>
#include <stdexcept>
#include <string>

#include <boost/describe/class.hpp>

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace cf {
struct Batch {
  std::vector<double> values;
  std::string label;
};
class Money {
 public:
  Money() = default;
  explicit Money(long long c) : cents_(c) {}

 private:
  long long cents_ = 0;
  BOOST_DESCRIBE_CLASS(Money, (), (), (), (cents_))
};
class Service {
 public:
  explicit Service(int) {}
  int by_value(int x) { return x; }
  std::string by_cref(const std::string& s) { return s; }
  std::size_t view(std::string_view s) { return s.size(); }
  std::size_t cstr(const char* s) { return std::string_view(s).size(); }
  double sum(const Batch& b) { return b.values.empty() ? 0 : b.values[0]; }
  Money money(const Money& m) { return m; }
  std::optional<std::map<std::string, int>> map(std::vector<std::string>) { return {}; }
  int scale(int x) { return x; }
  double scale(double x) { return x; }
  int visit(std::function<int(const std::string&)> f) { return f("x"); }
};
PROCXY_CLASS(Service, by_value, by_cref, view, cstr, sum, money, map,
             (scale, (int(int)), (double(double))), visit);

class valid_error : public std::runtime_error {
 public:
  valid_error(std::string w, int c) : std::runtime_error(std::move(w)), code(c) {}
  int code;
};
PROCXY_EXCEPTION(valid_error, code);

// String-like constructor arguments cross as strings, whatever the constructor takes.
class Db {
 public:
  explicit Db(const std::string& path) : path_(path) {}
  Db(std::string_view path, int flags) : path_(path) { (void)flags; }
  Db(const char* a, const char* b, int) : path_(std::string(a) + b) {}
  std::string path() const { return path_; }

 private:
  std::string path_;
};
PROCXY_CLASS(Db, path);

[[maybe_unused]] void literals() {
  auto a = procxy::spawn<Db>({}, ":memory:");
  char name[32] = "file.db";
  auto b = procxy::spawn<Db>({}, name, 2);
  auto c = procxy::spawn<Db>({}, std::string_view("x"), 2);
  auto d = procxy::spawn<Db>({}, "a", "b", 3);
  auto e = procxy::spawn<Db>({}, static_cast<const char*>("p"));
  (void)a; (void)b; (void)c; (void)d; (void)e;
}

[[maybe_unused]] void use() {
  auto s = procxy::spawn<Service>({}, 1);
  (void)s.by_value(1);
  (void)s.by_cref("x");
  (void)s.view("x");
  (void)s.cstr("x");
  (void)s.sum({{1, 2}, "b"});
  (void)s.money(Money(5));
  (void)s.map({"a"});
  (void)s.scale(1);
  (void)s.scale(1.0);
  (void)s.call<&Service::by_value>(2);
  (void)s.with_timeout(std::chrono::milliseconds(5)).by_value(1);
  (void)s.idempotent(2).call<&Service::by_value>(2);
  (void)s.visit([](const std::string&) { return 1; });
}
}  // namespace cf
