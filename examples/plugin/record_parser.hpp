// The parent's whole view of the parser: a declaration and its description. The code is in
// record_parser.cpp, a module that procxy-host loads in a sandboxed child; the parent links
// neither it nor anything it uses.
#pragma once

#include <procxy/procxy.hpp>
#include <string>
#include <vector>

namespace records {

struct field {
  std::string name;
  std::string value;
};

// Parses records like "name:s=ada;born:i=1815" (s: text, i: integer). An "@include <path>"
// record reads its fields from a file. The parser has a bug, as parsers of untrusted input do.
class RecordParser {
 public:
  explicit RecordParser(std::string separator);
  std::vector<field> parse(const std::string& record);
  int parsed() const;  // records parsed by this instance

 private:
  std::string separator_;
  int parsed_ = 0;
};
PROCXY_INTERFACE(RecordParser, parse, parsed);

}  // namespace records
