// The README's quick start: a Calculator constructed in a child process, called through a proxy.
#include <unistd.h>

#include <cmath>
#include <iostream>
#include <map>
#include <procxy/procxy.hpp>
#include <stdexcept>
#include <string>
#include <vector>

using namespace std::chrono_literals;

struct Batch {  // plain aggregates cross with no macro
  std::vector<double> values;
  std::string label;
};
struct Summary {
  double mean;
  double max;
  std::size_t count;
};

class Calculator {  // an ordinary class, unaware of procxy
 public:
  explicit Calculator(int precision = 2) : precision_(precision) {}
  double add(double a, double b) { return round(a + b); }
  double divide(double a, double b) {
    if (b == 0) throw std::domain_error("division by zero");
    return round(a / b);
  }
  std::map<std::string, int> histogram(const std::vector<std::string>& words) {
    std::map<std::string, int> h;
    for (const auto& w : words) ++h[w];
    return h;
  }
  Summary summarize(const Batch& batch) {
    Summary s{0, -INFINITY, batch.values.size()};
    for (double v : batch.values) {
      s.mean += v;
      s.max = std::max(s.max, v);
    }
    if (s.count) s.mean /= static_cast<double>(s.count);
    return s;
  }
  int whoami() { return static_cast<int>(::getpid()); }
  void reset() { precision_ = 2; }

 private:
  double round(double v) const {
    double f = std::pow(10.0, precision_);
    return std::round(v * f) / f;
  }
  int precision_;
};
PROCXY_CLASS(Calculator, add, divide, histogram, summarize, whoami, reset);

procxy::future<double> twice(procxy::proxy<Calculator>& calc);

int main(int argc, char** argv) {
  procxy::init(argc, argv);  // in the child, this serves the object and never returns

  auto calc = procxy::spawn<Calculator>({.call_timeout = 5s}, 4);
  std::cout << "parent pid " << ::getpid() << ", Calculator runs in child pid " << calc.pid()
            << " (child says " << calc.whoami().get() << ")\n";

  double sum = calc.add(5, 3).get();
  std::cout << "add(5, 3) = " << sum << "\n";

  try {
    calc.divide(1, 0).get();
  } catch (const std::domain_error& e) {
    std::cout << "divide(1, 0) threw std::domain_error in the child: \"" << e.what() << "\"\n";
  }

  Summary s = calc.summarize({{1, 2, 3}, "x"}).get();
  std::cout << "summarize({1, 2, 3}) = mean " << s.mean << ", max " << s.max << ", count "
            << s.count << "\n";

  auto h = calc.histogram({"a", "b", "a"}).get();
  std::cout << "histogram(a b a) = {a: " << h["a"] << ", b: " << h["b"] << "}\n";

  double third = calc.call<&Calculator::divide>(10, 3).get();  // the macro-free form
  std::cout << "call<&Calculator::divide>(10, 3) = " << third << " (precision 4)\n";

  std::cout << "terminating the child\n";
  calc.terminate();
  std::cout << "child running: " << std::boolalpha << calc.running() << "\n";
}
