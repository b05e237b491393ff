// A class the consumer only declares: its code is in greeter_module.cpp, a module procxy-host
// loads (the consumer links neither).
#pragma once

#include <procxy/procxy.hpp>
#include <string>

class Greeter {
 public:
  explicit Greeter(std::string greeting);
  std::string greet(const std::string& who);

 private:
  std::string greeting_;
};
PROCXY_INTERFACE(Greeter, greet);
