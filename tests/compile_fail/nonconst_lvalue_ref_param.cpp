// expect: procxy: a method parameter is a non-const lvalue reference
// expect: Take it by value or const reference and return the result instead
// expect-gnu: P = std::__cxx11::basic_string<char>&
#include <procxy/procxy.hpp>

#include <string>

struct Appender {
  void append(std::string& out) { out += "x"; }
};
PROCXY_CLASS(Appender, append);
