// The module: Parser's implementation, its description and its constructor. Built as a shared
// library that links no procxy (procxy-host provides it).
#include <csignal>

#include "parser.hpp"

namespace plugin_demo {

Parser::Parser(std::string separator) : separator_(std::move(separator)) {}

std::vector<std::string> Parser::keys(const std::string& record) {
  if (!record.empty() && record[0] == '!') std::raise(SIGSEGV);  // the "bug"
  std::vector<std::string> out;
  std::size_t at = 0;
  while (at < record.size()) {
    auto end = record.find(separator_, at);
    auto field = record.substr(at, end == std::string::npos ? std::string::npos : end - at);
    out.push_back(field.substr(0, field.find('=')));
    if (end == std::string::npos) break;
    at = end + separator_.size();
  }
  ++parsed_;
  return out;
}
int Parser::parsed() const { return parsed_; }
int Parser::loaded_from_module() const { return 4242; }

PROCXY_CONSTRUCTOR(Parser, std::string);

}  // namespace plugin_demo
