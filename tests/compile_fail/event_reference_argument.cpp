// expect: procxy: event arguments are values
// expect-gnu: class procxy::event<const std::__cxx11::basic_string<char
#include <procxy/procxy.hpp>

#include <string>

struct Job {
  procxy::event<const std::string&> named;
  void run() {}
};
PROCXY_CLASS(Job, run, named);
