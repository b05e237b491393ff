// expect: procxy: PROCXY_EXCEPTION needs a class derived from std::exception
// expect-gnu: E = not_an_exception
#include <procxy/procxy.hpp>

struct not_an_exception {
  explicit not_an_exception(int c) : code(c) {}
  int code;
};
PROCXY_EXCEPTION(not_an_exception, code);
