// fuzz/value_types.hpp — the types value_fuzz decodes, shared with make_corpus so that the seed
// files and the fuzz target agree on the selector byte (the first byte of an input picks
// value_types' element `byte % (size + 1)`; the extra last selector is decode_remote_error).
//
// Append new types at the end: inserting one renumbers the selectors of the committed seeds.
#pragma once

#include <array>
#include <boost/describe/class.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <list>
#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

#include "procxy/exception.hpp"
#include "procxy/unique_fd.hpp"

namespace procxy_fuzz {

// How a successful decode is checked (value_fuzz.cpp). Always: the value encodes, and that
// encoding decodes again, completely and without error. Then:
enum class check {
  exact,        // re-encoding the value gives exactly the bytes it was decoded from
  normalizing,  // ordered associative containers drop duplicate keys and sort: the re-encoding,
                // decoded and encoded once more, is byte-identical to itself
  unordered,    // unordered containers may iterate in another order: the value decoded from the
                // re-encoding equals the first one (operator==)
};

template <class T, check C>
struct entry {
  using type = T;
  static constexpr check how = C;
};

// ---- plain aggregates (Boost.PFR) --------------------------------------------------------------

enum class color : std::uint8_t { red = 0, green = 1, blue = 2 };

struct point {
  std::int32_t x;
  double y;
};

struct polyline {
  std::vector<point> points;
  std::string name;
  std::optional<point> origin;
  color stroke;
};

struct drawing {
  std::vector<polyline> lines;
  std::variant<std::monostate, std::int64_t, point, std::string> tag;
  std::optional<std::vector<polyline>> history;
  bool visible;
  std::uint16_t layer;
};

// Zero bytes on the wire: containers of it are capped by decoder::max_zero_width_elements.
struct holds_nothing {
  std::tuple<> nothing;
};

// Empty classes cross as one byte; the decoder accepts any value of it and the encoder writes 0,
// so types holding them are checked as `normalizing`.
struct nothing_here {};

// ---- classes described with Boost.Describe (private members, a described base) ----------------

class account {
 public:
  account() = default;
  account(std::string owner, std::int64_t cents, std::vector<std::string> tags,
          std::optional<point> at)
      : owner_(std::move(owner)), cents_(cents), tags_(std::move(tags)), location_(at) {}

 private:
  std::string owner_;
  std::int64_t cents_ = 0;
  std::vector<std::string> tags_;
  std::optional<point> location_;
  BOOST_DESCRIBE_CLASS(account, (), (), (), (owner_, cents_, tags_, location_))
};

class audited_account : public account {
 public:
  audited_account() = default;
  audited_account(account base, std::vector<std::pair<std::int64_t, std::string>> entries)
      : account(std::move(base)), log_(std::move(entries)) {}

 private:
  std::vector<std::pair<std::int64_t, std::string>> log_;
  BOOST_DESCRIBE_CLASS(audited_account, (account), (), (), (log_))
};

// A descriptor among other fields (docs/design.md "Descriptors"): the value holds an index into
// the message's descriptors; value_fuzz decodes with four of them (indices 0-3, each once).
struct with_descriptor {
  std::string name;
  procxy::unique_fd fd;
  std::uint8_t tail;
};

class described_nothing {
 public:
  described_nothing() = default;
  BOOST_DESCRIBE_CLASS(described_nothing, (), (), (), ())
};

using value_types = std::tuple<
    entry<std::int32_t, check::exact>,                                                //  0
    entry<std::uint64_t, check::exact>,                                               //  1
    entry<double, check::exact>,                                                      //  2
    entry<bool, check::exact>,                                                        //  3
    entry<color, check::exact>,                                                       //  4
    entry<std::string, check::exact>,                                                 //  5
    entry<std::vector<double>, check::exact>,                                         //  6
    entry<std::vector<std::string>, check::exact>,                                    //  7
    entry<std::vector<bool>, check::exact>,                                           //  8
    entry<std::map<std::string, std::int32_t>, check::normalizing>,                   //  9
    entry<std::unordered_map<std::string, std::int64_t>, check::unordered>,           // 10
    entry<std::set<std::int32_t>, check::normalizing>,                                // 11
    entry<std::optional<std::vector<std::int32_t>>, check::exact>,                    // 12
    entry<std::variant<std::int32_t, std::string, std::vector<char>>, check::exact>,  // 13
    entry<std::tuple<std::int16_t, std::string, bool, float, std::pair<char, std::uint8_t>>,
          check::exact>,                                // 14
    entry<drawing, check::exact>,                       // 15
    entry<audited_account, check::exact>,               // 16
    entry<std::vector<account>, check::exact>,          // 17
    entry<std::array<std::string, 3>, check::exact>,    // 18
    entry<std::array<std::uint16_t, 4>, check::exact>,  // 19
    entry<std::tuple<std::chrono::nanoseconds, std::chrono::duration<double, std::milli>,
                     std::chrono::system_clock::time_point>,
          check::exact>,                                                       // 20
    entry<std::filesystem::path, check::exact>,                                // 21
    entry<std::vector<std::vector<std::vector<std::int32_t>>>, check::exact>,  // 22
    entry<std::tuple<std::vector<std::tuple<>>, std::vector<std::array<std::int32_t, 0>>,
                     std::vector<holds_nothing>, std::uint8_t>,
          check::exact>,                                                                 // 23
    entry<std::vector<std::vector<std::tuple<>>>, check::exact>,                         // 24
    entry<std::deque<std::list<std::string>>, check::exact>,                             // 25
    entry<std::map<std::int32_t, std::vector<point>>, check::normalizing>,               // 26
    entry<std::unordered_set<std::string>, check::unordered>,                            // 27
    entry<std::vector<std::pair<nothing_here, described_nothing>>, check::normalizing>,  // 28
    // Descriptors: re-encoding numbers them in order of appearance, so the bytes normalize.
    entry<std::vector<std::optional<procxy::unique_fd>>, check::normalizing>,  // 29
    entry<std::vector<with_descriptor>, check::normalizing>>;                  // 30

inline constexpr std::size_t value_type_count = std::tuple_size_v<value_types>;
// The selector of decode_remote_error.
inline constexpr std::size_t remote_error_selector = value_type_count;
inline constexpr std::size_t selector_count = value_type_count + 1;

// The selector byte of T (make_corpus).
template <class T, std::size_t I = 0>
constexpr std::size_t selector_of() {
  static_assert(I < value_type_count, "not one of value_types");
  if constexpr (std::is_same_v<typename std::tuple_element_t<I, value_types>::type, T>)
    return I;
  else
    return selector_of<T, I + 1>();
}

// ---- exceptions registered with PROCXY_EXCEPTION (`registered` reply_error payloads) -----------

// Rebuilt with E(members...).
class quota_exceeded : public std::runtime_error {
 public:
  quota_exceeded(std::string who, std::int32_t max)
      : std::runtime_error("quota of " + who + " exceeded: " + std::to_string(max)),
        user(std::move(who)),
        limit(max) {}
  std::string user;
  std::int32_t limit;
};
PROCXY_EXCEPTION(quota_exceeded, user, limit);

struct failure_site {
  std::vector<point> path;
  std::optional<std::string> note;
};

// Rebuilt with E(what, members...).
class bad_drawing : public std::logic_error {
 public:
  bad_drawing(const std::string& what, failure_site where, std::map<std::string, std::int32_t> n)
      : std::logic_error(what), site(std::move(where)), counts(std::move(n)) {}
  failure_site site;
  std::map<std::string, std::int32_t> counts;
};
PROCXY_EXCEPTION(bad_drawing, site, counts);

}  // namespace procxy_fuzz
