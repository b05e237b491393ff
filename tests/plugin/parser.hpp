// A class that lives in a module (tests/plugin/parser_module.cpp, a shared library loaded by
// procxy-host); the parent includes this header only.
#pragma once

#include <string>
#include <vector>

#include "procxy/procxy.hpp"

namespace plugin_demo {

// Parses "key=value;key=value" records, as an untrusted-input parser would. A record that starts
// with '!' crashes it (a stand-in for a parser bug on malformed input).
class Parser {
 public:
  explicit Parser(std::string separator);
  std::vector<std::string> keys(const std::string& record);
  int parsed() const;
  int loaded_from_module() const;  // the module's own marker, proving where the code ran

 private:
  std::string separator_;
  int parsed_ = 0;
};
PROCXY_INTERFACE(Parser, keys, parsed, loaded_from_module);

}  // namespace plugin_demo
