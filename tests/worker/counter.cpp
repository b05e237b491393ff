// Counter's implementation: linked into the worker binary only, never into interface_test.
#include "counter.hpp"

namespace worker_demo {

Counter::Counter(int start) : value(start), name_("counter") {}
Counter::Counter(std::string name, int start) : value(start), name_(std::move(name)) {}
int Counter::add(int n) {
  value += n;
  history_.push_back(n);
  changed.emit(value);
  return value;
}
int Counter::add(int a, int b) { return add(a + b); }
std::string Counter::name() const { return name_; }
std::vector<int> Counter::history() const { return history_; }
void Counter::count_to(int n, std::function<void(int)> each) {
  for (int i = 1; i <= n; ++i) each(i);
}

}  // namespace worker_demo
