// expect: procxy: PROCXY_EXCEPTION needs a non-final class
// expect-gnu: E = sealed_error
#include <procxy/procxy.hpp>

#include <stdexcept>

class sealed_error final : public std::runtime_error {
 public:
  explicit sealed_error(int c) : std::runtime_error("sealed"), code(c) {}
  int code;
};
PROCXY_EXCEPTION(sealed_error, code);
