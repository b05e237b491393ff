// expect: procxy: PROCXY_EXCEPTION(E, members...) needs a constructor E(members...) or E(std::string what, members...)
// expect-gnu: E = odd_error
#include <procxy/procxy.hpp>

#include <stdexcept>
#include <string>

class odd_error : public std::runtime_error {
 public:
  odd_error() : std::runtime_error("odd") {}
  std::string detail;
};
PROCXY_EXCEPTION(odd_error, detail);
