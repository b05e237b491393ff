// The module: RecordParser's code, compiled against procxy::module (headers only) and loaded by
// procxy-host in the child. Nothing here knows about the sandbox.
#include "record_parser.hpp"

#include <fstream>
#include <stdexcept>
#include <string_view>

namespace records {

namespace {

struct codec {
  const char* name;
  bool (*valid)(std::string_view);
};

const codec* codec_for(char tag) {
  static const codec text{"text", [](std::string_view) { return true; }};
  static const codec integer{"integer", [](std::string_view v) {
                               return !v.empty() &&
                                      v.find_first_not_of("0123456789") == std::string_view::npos;
                             }};
  switch (tag) {
    case 's': return &text;
    case 'i': return &integer;
    default: return nullptr;  // an unknown type
  }
}

}  // namespace

RecordParser::RecordParser(std::string separator) : separator_(std::move(separator)) {}

std::vector<field> RecordParser::parse(const std::string& record) {
  if (record.rfind("@include ", 0) == 0) {  // a feature that untrusted input can turn on us
    std::ifstream in(record.substr(9));
    std::string line;
    std::vector<field> out;
    while (std::getline(in, line)) out.push_back({"line", line});
    return out;
  }
  std::vector<field> out;
  std::size_t at = 0;
  while (at <= record.size()) {
    std::size_t end = record.find(separator_, at);
    if (end == std::string::npos) end = record.size();
    const std::string_view item(record.data() + at, end - at);
    const auto colon = item.find(':'), equals = item.find('=');
    if (colon == std::string_view::npos || equals != colon + 2)
      throw std::invalid_argument("malformed field '" + std::string(item) + "'");
    const std::string_view value = item.substr(equals + 1);
    const codec* c = codec_for(item[colon + 1]);
    if (!c->valid(value))  // the bug: an unknown type leaves c null
      throw std::invalid_argument("'" + std::string(value) + "' is not " + c->name);
    out.push_back({std::string(item.substr(0, colon)), std::string(value)});
    at = end + separator_.size();
  }
  ++parsed_;
  return out;
}

int RecordParser::parsed() const { return parsed_; }

PROCXY_CONSTRUCTOR(RecordParser, std::string);

}  // namespace records
