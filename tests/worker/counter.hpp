// A class whose parent links none of its member functions: the parent includes this header only
// (declarations + PROCXY_INTERFACE); the worker binary links tests/worker/counter.cpp and
// registers the constructor (tests/worker/worker_main.cpp).
#pragma once

#include <string>
#include <vector>

#include "procxy/procxy.hpp"

namespace worker_demo {

class Counter {
 public:
  explicit Counter(int start);
  Counter(std::string name, int start);
  int add(int n);
  int add(int a, int b);
  std::string name() const;
  std::vector<int> history() const;
  void count_to(int n, std::function<void(int)> each);

  procxy::event<int> changed;
  int value = 0;  // a property, mirrored read-only in the parent

 private:
  std::string name_;
  std::vector<int> history_;
};
PROCXY_INTERFACE(Counter, (add, (int(int)), (int(int, int))), name, history, count_to, changed,
                 value);

}  // namespace worker_demo
