// procxy/detail/print.hpp — renders transferable values as text for PROCXY_TRACE=1.
// Mirrors codec.hpp's type cases; long values are cut so a 1 MiB vector prints as a summary.
#pragma once

#include <cstdio>
#include <string>

#include "procxy/detail/codec.hpp"

namespace procxy::detail {

inline constexpr std::size_t print_limit = 16;  // elements shown per container

template <class T>
void print_value(std::string& out, const T& v);

template <class Range>
void print_range(std::string& out, const Range& r, char open, char close) {
  out += open;
  std::size_t i = 0;
  for (const auto& e : r) {
    if (i) out += ", ";
    if (i == print_limit) {
      out += "... (" + std::to_string(std::size(r)) + " elements)";
      break;
    }
    if constexpr (requires {
                    e.first;
                    e.second;
                  } &&
                  is_associative<Range>) {
      print_value(out, e.first);
      out += ": ";
      print_value(out, e.second);
    } else {
      print_value(out, e);
    }
    ++i;
  }
  out += close;
}

template <class T>
void print_value(std::string& out, const T& v) {
  using U = std::remove_cv_t<T>;
  if constexpr (codec_hook<U>::enabled) {
    out += "<callback>";
  } else if constexpr (std::is_same_v<U, bool>) {
    out += v ? "true" : "false";
  } else if constexpr (std::is_same_v<U, char>) {
    out += '\'';
    out += v;
    out += '\'';
  } else if constexpr (std::is_floating_point_v<U>) {
    char b[64];
    std::snprintf(b, sizeof b, "%.17g", static_cast<double>(v));
    out += b;
  } else if constexpr (std::is_arithmetic_v<U>) {
    out += std::to_string(v);
  } else if constexpr (std::is_enum_v<U>) {
    out += std::to_string(static_cast<std::underlying_type_t<U>>(v));
  } else if constexpr (std::is_same_v<U, std::byte>) {
    out += std::to_string(static_cast<unsigned>(v));
  } else if constexpr (std::is_same_v<U, unique_fd>) {
    out += v ? "fd " + std::to_string(v.get()) : std::string("fd (empty)");
  } else if constexpr (std::is_same_v<U, std::monostate>) {
    out += "monostate";
  } else if constexpr (std::is_same_v<U, std::string> || std::is_same_v<U, std::string_view>) {
    out += '"';
    out.append(v.data(), std::min<std::size_t>(v.size(), 80));
    if (v.size() > 80) out += "...";
    out += '"';
  } else if constexpr (std::is_same_v<U, const char*> || std::is_same_v<U, char*>) {
    print_value(out, std::string_view(v ? v : ""));
  } else if constexpr (is_string<U>) {
    out += "<string of " + std::to_string(v.size()) + ">";
  } else if constexpr (std::is_same_v<U, std::filesystem::path>) {
    print_value(out, v.native());
  } else if constexpr (is_duration<U>) {
    out += std::to_string(v.count()) + " ticks";
  } else if constexpr (is_time_point<U>) {
    out += "time_point(" + std::to_string(v.time_since_epoch().count()) + ")";
  } else if constexpr (std::is_same_v<U, std::vector<std::byte>>) {
    out += "<" + std::to_string(v.size()) + " bytes>";
  } else if constexpr (is_std_array<U> || is_sequence<U>) {
    print_range(out, v, '[', ']');
  } else if constexpr (is_associative<U>) {
    print_range(out, v, '{', '}');
  } else if constexpr (is_specialization_of<U, std::pair>) {
    out += '(';
    print_value(out, v.first);
    out += ", ";
    print_value(out, v.second);
    out += ')';
  } else if constexpr (is_specialization_of<U, std::tuple>) {
    out += '(';
    std::size_t i = 0;
    std::apply([&](const auto&... e) { ((out += (i++ ? ", " : ""), print_value(out, e)), ...); },
               v);
    out += ')';
  } else if constexpr (is_specialization_of<U, std::optional>) {
    if (v)
      print_value(out, *v);
    else
      out += "nullopt";
  } else if constexpr (is_specialization_of<U, std::variant>) {
    if (!v.valueless_by_exception()) std::visit([&](const auto& a) { print_value(out, a); }, v);
  } else if constexpr (is_described<U>) {
    out += '{';
    std::size_t i = 0;
    boost::mp11::mp_for_each<boost::describe::describe_members<U, described_mods>>([&](auto d) {
      if (i++) out += ", ";
      out += d.name;
      out += '=';
      print_value(out, v.*d.pointer);
    });
    out += '}';
  } else if constexpr (is_reflected_aggregate<U>) {
    out += '{';
    std::size_t i = 0;
    boost::pfr::for_each_field(v, [&](const auto& f) {
      if (i++) out += ", ";
      print_value(out, f);
    });
    out += '}';
  } else {
    out += "<value>";
  }
}

// "(a, b, c)" for an argument list.
template <class... A>
std::string print_args(const A&... a) {
  std::string out = "(";
  std::size_t i = 0;
  ((out += (i++ ? ", " : ""), print_value(out, a)), ...);
  out += ')';
  return out;
}

}  // namespace procxy::detail
