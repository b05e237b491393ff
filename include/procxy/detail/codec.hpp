// procxy/detail/codec.hpp — the value codec: one binary encoding for every transferable type.
//
// Encoding (little-endian, not self-describing; both ends know the static type):
//   bool                      1 byte, 0 or 1 (anything else is a protocol_error)
//   integers, enums, floats   fixed width, memcpy of the object representation
//   string, path, containers  u32 count, then the elements (contiguous arithmetic: one memcpy)
//   std::array<T, N>          N elements, no count
//   pair, tuple, aggregates   their fields in order (aggregates reflected with Boost.PFR)
//   described classes         their Boost.Describe members in declaration order
//   optional                  u8 engaged, then the value
//   variant                   u32 index, then the alternative
//   monostate                 1 byte (0), so no element is ever zero bytes wide
//   duration / time_point     the count of the duration (since the epoch for time_point)
//   procxy::unique_fd         u32 index into the frame's descriptors (0xffffffff: empty); the
//                             descriptor itself travels beside the bytes (docs/design.md
//                             "Descriptors"): the encoder appends a duplicate to the frame
//                             buffer's list, the decoder takes it out of the received frame's
//                             list (an index out of range or taken twice: protocol_error)
//
// The decoder trusts nothing: every count is checked against the bytes left (count * the
// element's minimum wire size) before anything is allocated, and any violation throws
// procxy::protocol_error. Types that cannot cross fail at compile time with a static_assert
// whose message starts with "procxy:".
#pragma once

#include <array>
#include <bit>
#include <boost/describe/members.hpp>
#include <boost/describe/modifiers.hpp>
#include <boost/mp11/algorithm.hpp>
#include <boost/pfr/core.hpp>
#include <boost/pfr/tuple_size.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <limits>
#include <list>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

#include "procxy/detail/buffer.hpp"
#include "procxy/error.hpp"
#include "procxy/unique_fd.hpp"

static_assert(std::endian::native == std::endian::little,
              "procxy: the wire format is little-endian and this build has no byte swapping");

namespace procxy::detail {

class codec_context;  // per-connection state (callbacks); null when encoding plain values

template <class...>
inline constexpr bool always_false = false;

template <class T, template <class...> class Tmpl>
inline constexpr bool is_specialization_of = false;
template <template <class...> class Tmpl, class... A>
inline constexpr bool is_specialization_of<Tmpl<A...>, Tmpl> = true;

template <class T>
inline constexpr bool is_std_array = false;
template <class T, std::size_t N>
inline constexpr bool is_std_array<std::array<T, N>> = true;

template <class T>
inline constexpr bool is_duration = false;
template <class R, class P>
inline constexpr bool is_duration<std::chrono::duration<R, P>> = true;

template <class T>
inline constexpr bool is_time_point = false;
template <class C, class D>
inline constexpr bool is_time_point<std::chrono::time_point<C, D>> = true;

template <class T>
inline constexpr bool is_described =
    boost::describe::has_describe_members<T>::value && !std::is_polymorphic_v<T>;
// Described members of every access, including those of described bases.
inline constexpr unsigned described_mods =
    boost::describe::mod_any_access | boost::describe::mod_inherited;

// Sequences decoded by push_back / emplace_back.
template <class T>
inline constexpr bool is_sequence =
    is_specialization_of<T, std::vector> || is_specialization_of<T, std::deque> ||
    is_specialization_of<T, std::list>;

// Associative containers decoded by insert.
template <class T>
inline constexpr bool is_associative =
    is_specialization_of<T, std::map> || is_specialization_of<T, std::multimap> ||
    is_specialization_of<T, std::unordered_map> ||
    is_specialization_of<T, std::unordered_multimap> || is_specialization_of<T, std::set> ||
    is_specialization_of<T, std::multiset> || is_specialization_of<T, std::unordered_set> ||
    is_specialization_of<T, std::unordered_multiset>;

template <class T>
inline constexpr bool is_string = is_specialization_of<T, std::basic_string>;

// Plain aggregates crossed field by field through Boost.PFR.
template <class T>
inline constexpr bool is_reflected_aggregate =
    std::is_class_v<T>&& std::is_aggregate_v<T> && !is_std_array<T> && !is_described<T> &&
    !std::is_polymorphic_v<T>;

// Extension point: `template <> struct procxy::detail::codec_hook<X>` with static `encode`,
// `decode`, `min_size` lets later layers (callbacks) plug types in without touching this file.
template <class T, class = void>
struct codec_hook {
  static constexpr bool enabled = false;
};

// ---- schema: a type's structure, for the wire ids ---------------------------------------------

// A string that differs whenever two builds would encode a type differently: its name, and for a
// plain aggregate or a described class its fields in order (described: with their names), for a
// template its type arguments, for std::array its element, recursively. Two builds of a class
// whose descriptions name a member with another return type, or whose argument struct gained,
// lost or retyped a field (or, described, renamed one), so get different wire ids (method.hpp
// tag_id), and the child refuses the description at construction instead of decoding one type
// as another. Same-type fields of a plain aggregate swapped or renamed are not seen (Boost.PFR
// 1.81 has no field names).
class schema_builder {
 public:
  template <class T>
  void add();
  const std::string& str() const noexcept { return out_; }

 private:
  template <class T>
  struct type_args : std::false_type {};
  template <template <class...> class TT, class... A>
  struct type_args<TT<A...>> : std::true_type {
    static void add(schema_builder& b) { (b.add<A>(), ...); }
  };
  template <class R, class... A>
  struct type_args<R(A...)> : std::true_type {
    static void add(schema_builder& b) { (b.add<R>(), ..., b.add<A>()); }
  };
  template <class U, std::size_t... I>
  void add_fields(std::index_sequence<I...>) {
    ((add<boost::pfr::tuple_element_t<I, U>>(), out_ += ';'), ...);
  }
  std::string out_;
  std::vector<const std::type_info*> open_;  // classes being expanded: a recursive type stops
};

template <class T>
void schema_builder::add() {
  using U = std::remove_cvref_t<T>;
  out_ += typeid(U).name();
  if constexpr (std::is_empty_v<U>) {
    // No state to encode (an empty struct; a comparator, hasher, allocator or traits among a
    // container's arguments): its name says all.
  } else if constexpr (is_std_array<U>) {
    out_ += '[';
    add<typename U::value_type>();
    out_ += ']';
  } else if constexpr (is_described<U> || is_reflected_aggregate<U>) {
    for (const auto* t : open_)
      if (*t == typeid(U)) return;
    open_.push_back(&typeid(U));
    out_ += '{';
    if constexpr (is_described<U>) {
      boost::mp11::mp_for_each<boost::describe::describe_members<U, described_mods>>([&](auto d) {
        out_ += d.name;
        out_ += ':';
        add<decltype(std::declval<U&>().*d.pointer)>();
        out_ += ';';
      });
    } else {
      add_fields<U>(std::make_index_sequence<boost::pfr::tuple_size_v<U>>{});
    }
    out_ += '}';
    open_.pop_back();
  } else if constexpr (type_args<U>::value) {
    out_ += '<';
    type_args<U>::add(*this);
    out_ += '>';
  }
}

// ---- the minimum number of bytes any value of T occupies on the wire --------------------------

template <class T>
constexpr std::size_t min_wire_size();

template <class Tuple, std::size_t... I>
constexpr std::size_t sum_min_sizes(std::index_sequence<I...>) {
  return (std::size_t{0} + ... + min_wire_size<std::tuple_element_t<I, Tuple>>());
}

template <class U, std::size_t... I>
constexpr std::size_t sum_field_min_sizes(std::index_sequence<I...>) {
  return (std::size_t{0} + ... + min_wire_size<boost::pfr::tuple_element_t<I, U>>());
}

template <class T>
constexpr std::size_t min_wire_size() {
  using U = std::remove_cv_t<T>;
  if constexpr (codec_hook<U>::enabled) {
    return codec_hook<U>::min_size;
  } else if constexpr (std::is_arithmetic_v<U> || std::is_enum_v<U>) {
    return sizeof(U);
  } else if constexpr (std::is_same_v<U, unique_fd>) {
    return 4;
  } else if constexpr (std::is_same_v<U, std::monostate>) {
    return 1;
  } else if constexpr (is_duration<U>) {
    return sizeof(typename U::rep);
  } else if constexpr (is_time_point<U>) {
    return sizeof(typename U::duration::rep);
  } else if constexpr (is_std_array<U>) {
    return std::tuple_size_v<U> * min_wire_size<typename U::value_type>();
  } else if constexpr (is_specialization_of<U, std::pair> || is_specialization_of<U, std::tuple>) {
    return sum_min_sizes<U>(std::make_index_sequence<std::tuple_size_v<U>>{});
  } else if constexpr (is_specialization_of<U, std::optional>) {
    return 1;
  } else if constexpr (is_specialization_of<U, std::variant>) {
    return 4;
  } else if constexpr (is_described<U>) {
    std::size_t n = 0;
    boost::mp11::mp_for_each<boost::describe::describe_members<U, described_mods>>([&](auto d) {
      n += min_wire_size<std::remove_cvref_t<decltype(std::declval<U&>().*d.pointer)>>();
    });
    if constexpr (boost::mp11::mp_size<
                      boost::describe::describe_members<U, described_mods>>::value == 0)
      return 1;  // an empty described class is sent as one byte
    return n;
  } else if constexpr (is_reflected_aggregate<U>) {
    // Field types by index, not structure_to_tuple (which copies: a move-only field, a
    // unique_fd, must not need a copy just to be measured).
    constexpr std::size_t n = boost::pfr::tuple_size_v<U>;
    if constexpr (n == 0) return 1;  // an empty struct is sent as one byte
    return sum_field_min_sizes<U>(std::make_index_sequence<n>{});
  } else {
    return 4;  // strings, paths, containers: their count
  }
}

// One place says why a type cannot cross; both the encoder and the decoder end here.
template <class U>
constexpr void reject_untransferable() {
  if constexpr (std::is_pointer_v<U> || std::is_member_pointer_v<U>) {
    static_assert(always_false<U>,
                  "procxy: raw pointers cannot cross a process boundary; pass the pointee by value "
                  "or const reference (or a std::vector / std::optional of it)");
  } else if constexpr (std::is_polymorphic_v<U>) {
    static_assert(always_false<U>,
                  "procxy: polymorphic class types cannot cross a process boundary (the other "
                  "process has no vtable for them); pass a plain aggregate or a described value "
                  "type instead");
  } else if constexpr (std::is_array_v<U>) {
    static_assert(always_false<U>,
                  "procxy: a C array cannot cross a process boundary (only char arrays, as "
                  "strings); pass a std::array or a std::vector instead");
  } else if constexpr (std::is_reference_v<U>) {
    static_assert(always_false<U>, "procxy: references cannot be stored in a transferred value");
  } else {
    static_assert(always_false<U>,
                  "procxy: this class is neither an aggregate nor described, so procxy cannot "
                  "serialize it; make it a plain aggregate (public fields, no constructors) or "
                  "describe it with BOOST_DESCRIBE_STRUCT / BOOST_DESCRIBE_CLASS");
  }
}

// ---- encoder ---------------------------------------------------------------------------------

class encoder {
 public:
  explicit encoder(byte_buffer& out, codec_context* ctx = nullptr) : out_(out), ctx_(ctx) {}
  byte_buffer& buffer() noexcept { return out_; }
  codec_context* context() const noexcept { return ctx_; }

  template <class T>
  void raw(const T& v) {
    static_assert(std::is_trivially_copyable_v<T>);
    std::memcpy(out_.extend(sizeof(T)), &v, sizeof(T));
  }
  void count(std::size_t n) {
    if (n > std::numeric_limits<std::uint32_t>::max())
      throw serialization_error("procxy: a string or container of " + std::to_string(n) +
                                " elements exceeds the wire limit of 2^32-1");
    raw(static_cast<std::uint32_t>(n));
  }

  template <class T>
  void operator()(const T& v);

  // A descriptor: a duplicate (close-on-exec) joins the frame's list, the value is its index.
  // Throws serialization_error if it cannot be duplicated (closed, or no descriptor left).
  void descriptor(const unique_fd& fd);

 private:
  template <class Range>
  void range(const Range& r) {
    count(std::size(r));
    for (const auto& e : r) (*this)(e);
  }
  byte_buffer& out_;
  codec_context* ctx_;
};

template <class T>
void encoder::operator()(const T& v) {
  using U = std::remove_cv_t<T>;
  if constexpr (codec_hook<U>::enabled) {
    codec_hook<U>::encode(*this, v);
  } else if constexpr (std::is_same_v<U, bool>) {
    raw(static_cast<std::uint8_t>(v ? 1 : 0));
  } else if constexpr (std::is_arithmetic_v<U> || std::is_enum_v<U>) {
    raw(v);
  } else if constexpr (std::is_same_v<U, unique_fd>) {
    descriptor(v);
  } else if constexpr (std::is_same_v<U, std::monostate>) {
    raw(std::uint8_t{0});
  } else if constexpr (is_string<U> || is_specialization_of<U, std::basic_string_view>) {
    count(v.size());
    out_.append(v.data(), v.size() * sizeof(typename U::value_type));
  } else if constexpr (std::is_same_v<U, std::filesystem::path>) {
    (*this)(v.native());
  } else if constexpr (is_duration<U>) {
    raw(v.count());
  } else if constexpr (is_time_point<U>) {
    raw(v.time_since_epoch().count());
  } else if constexpr (is_std_array<U>) {
    using E = typename U::value_type;
    if constexpr (std::is_arithmetic_v<E> && !std::is_same_v<E, bool>) {
      out_.append(v.data(), sizeof(E) * v.size());
    } else {
      for (const auto& e : v) (*this)(e);
    }
  } else if constexpr (is_specialization_of<U, std::vector>) {
    using E = typename U::value_type;
    if constexpr ((std::is_arithmetic_v<E> && !std::is_same_v<E, bool>) ||
                  std::is_same_v<E, std::byte>) {
      count(v.size());
      out_.append(v.data(), sizeof(E) * v.size());
    } else {
      range(v);
    }
  } else if constexpr (is_sequence<U> || is_associative<U>) {
    range(v);
  } else if constexpr (is_specialization_of<U, std::pair>) {
    (*this)(v.first);
    (*this)(v.second);
  } else if constexpr (is_specialization_of<U, std::tuple>) {
    std::apply([this](const auto&... e) { ((*this)(e), ...); }, v);
  } else if constexpr (is_specialization_of<U, std::optional>) {
    raw(static_cast<std::uint8_t>(v.has_value() ? 1 : 0));
    if (v) (*this)(*v);
  } else if constexpr (is_specialization_of<U, std::variant>) {
    if (v.valueless_by_exception())
      throw serialization_error("procxy: cannot send a valueless_by_exception variant");
    raw(static_cast<std::uint32_t>(v.index()));
    std::visit([this](const auto& alt) { (*this)(alt); }, v);
  } else if constexpr (is_described<U>) {
    boost::mp11::mp_for_each<boost::describe::describe_members<U, described_mods>>(
        [&](auto d) { (*this)(v.*d.pointer); });
    if constexpr (boost::mp11::mp_size<
                      boost::describe::describe_members<U, described_mods>>::value == 0)
      raw(std::uint8_t{0});
  } else if constexpr (std::is_pointer_v<U> &&
                       std::is_same_v<std::remove_cv_t<std::remove_pointer_t<U>>, char>) {
    if (v == nullptr) throw serialization_error("procxy: a null const char* cannot be sent");
    (*this)(std::string_view(v));
  } else if constexpr (std::is_array_v<U> &&
                       std::is_same_v<std::remove_cv_t<std::remove_extent_t<U>>, char>) {
    // A string literal or char buffer: its text up to the first NUL (never past its end).
    const std::string_view all(v, std::extent_v<U>);
    (*this)(all.substr(0, all.find('\0')));
  } else if constexpr (is_reflected_aggregate<U>) {
    boost::pfr::for_each_field(v, [this](const auto& f) { (*this)(f); });
    if constexpr (boost::pfr::tuple_size_v<U> == 0) raw(std::uint8_t{0});
  } else {
    reject_untransferable<U>();
  }
}

// ---- decoder ---------------------------------------------------------------------------------

class decoder {
 public:
  // `fds`: the descriptors that came with the frame (null: none may appear); a decoded
  // unique_fd takes its own out of the list.
  explicit decoder(byte_reader& in, codec_context* ctx = nullptr,
                   std::vector<unique_fd>* fds = nullptr)
      : in_(in), ctx_(ctx), fds_(fds), alloc_left_(alloc_budget(in.remaining())) {}
  byte_reader& reader() noexcept { return in_; }
  codec_context* context() const noexcept { return ctx_; }

  template <class T>
  T raw() {
    static_assert(std::is_trivially_copyable_v<T>);
    T v;
    in_.read(&v, sizeof(T));
    return v;
  }
  // Reads a count and checks that `count * min_each` bytes can still follow.
  // Elements that occupy no bytes at all (std::tuple<>, std::array<T, 0>, structs of those) are
  // capped at this many per decoder (one message), summed over all its containers, so a 4-byte
  // count cannot make the decoder build billions, nor can nesting multiply the cap
  // (vector<vector<tuple<>>>: 4 bytes per inner vector would otherwise buy 2^16 elements each).
  static constexpr std::size_t max_zero_width_elements = std::size_t{1} << 16;
  std::size_t count(std::size_t min_each) {
    auto n = static_cast<std::size_t>(raw<std::uint32_t>());
    if (min_each == 0) {
      if (n > zero_width_left_)
        throw protocol_error("procxy: count " + std::to_string(n) +
                             " of zero-width elements exceeds the " +
                             std::to_string(zero_width_left_) + " left of the message's limit");
      zero_width_left_ -= n;
    } else if (n > in_.remaining() / min_each) {
      throw protocol_error("procxy: count " + std::to_string(n) + " exceeds the " +
                           std::to_string(in_.remaining()) + " bytes left in the message");
    }
    return n;
  }

  // The same, and charges `n * mem_each` bytes to the message's allocation budget: decoding one
  // message may allocate at most max_alloc_factor times its size (plus 64 KiB), whatever the
  // nesting (a 1-byte optional of a 800-byte array in a vector would otherwise buy 800x).
  static constexpr std::size_t max_alloc_factor = 64;
  static constexpr std::size_t alloc_budget(std::size_t message_bytes) noexcept {
    return message_bytes * max_alloc_factor + (std::size_t{64} << 10);
  }
  std::size_t count(std::size_t min_each, std::size_t mem_each) {
    std::size_t n = count(min_each);
    if (mem_each != 0 && n > alloc_left_ / mem_each)
      throw protocol_error("procxy: a count of " + std::to_string(n) + " elements of " +
                           std::to_string(mem_each) +
                           " bytes would make this message allocate more than " +
                           std::to_string(max_alloc_factor) + " times its size");
    alloc_left_ -= n * mem_each;
    return n;
  }

  template <class T>
  void operator()(T& v);

  // A descriptor index: takes that descriptor out of the frame's list. An index past the list,
  // or one taken before, is a protocol_error.
  unique_fd descriptor();

  template <class T>
  T get() {
    if constexpr (std::is_default_constructible_v<T>) {
      T v{};
      (*this)(v);
      return v;
    } else {
      static_assert(codec_hook<T>::enabled,
                    "procxy: a value type must be default-constructible to be decoded");
      return codec_hook<T>::decode_value(*this);
    }
  }

 private:
  template <class V, std::size_t... I>
  void decode_variant(V& v, std::uint32_t index, std::index_sequence<I...>) {
    ((index == I ? (void)(*this)(v.template emplace<I>()) : void()), ...);
  }
  byte_reader& in_;
  codec_context* ctx_;
  std::vector<unique_fd>* fds_;
  std::size_t zero_width_left_ = max_zero_width_elements;
  std::size_t alloc_left_;
};

template <class T>
void decoder::operator()(T& v) {
  using U = std::remove_cv_t<T>;
  if constexpr (codec_hook<U>::enabled) {
    codec_hook<U>::decode(*this, v);
  } else if constexpr (std::is_same_v<U, bool>) {
    auto b = raw<std::uint8_t>();
    if (b > 1) throw protocol_error("procxy: bool byte is " + std::to_string(b));
    v = b != 0;
  } else if constexpr (std::is_arithmetic_v<U> || std::is_enum_v<U>) {
    v = raw<U>();
  } else if constexpr (std::is_same_v<U, unique_fd>) {
    v = descriptor();
  } else if constexpr (std::is_same_v<U, std::monostate>) {
    if (raw<std::uint8_t>() != 0) throw protocol_error("procxy: bad monostate byte");
  } else if constexpr (is_string<U>) {
    using C = typename U::value_type;
    std::size_t n = count(sizeof(C), sizeof(C));
    v.resize(n);
    in_.read(v.data(), n * sizeof(C));
  } else if constexpr (std::is_same_v<U, std::filesystem::path>) {
    std::filesystem::path::string_type s;
    (*this)(s);
    v = std::move(s);
  } else if constexpr (is_duration<U>) {
    v = U(raw<typename U::rep>());
  } else if constexpr (is_time_point<U>) {
    v = U(typename U::duration(raw<typename U::duration::rep>()));
  } else if constexpr (is_std_array<U>) {
    using E = typename U::value_type;
    if constexpr (std::is_arithmetic_v<E> && !std::is_same_v<E, bool>) {
      in_.read(v.data(), sizeof(E) * v.size());
    } else {
      for (auto& e : v) (*this)(e);
    }
  } else if constexpr (is_sequence<U>) {
    using E = typename U::value_type;
    std::size_t n = count(min_wire_size<E>(),
                          is_specialization_of<U, std::vector> ? sizeof(E) : sizeof(E) + 16);
    v.clear();
    if constexpr (is_specialization_of<U, std::vector> &&
                  ((std::is_arithmetic_v<E> && !std::is_same_v<E, bool>) ||
                   std::is_same_v<E, std::byte>)) {
      v.resize(n);
      in_.read(v.data(), n * sizeof(E));
    } else {
      if constexpr (is_specialization_of<U, std::vector>) v.reserve(n);
      for (std::size_t i = 0; i < n; ++i) {
        if constexpr (std::is_same_v<E, bool>) {
          v.push_back(get<bool>());
        } else {
          (*this)(v.emplace_back());
        }
      }
    }
  } else if constexpr (is_associative<U>) {
    using E = typename U::value_type;                           // pair<const K, V> for maps
    std::size_t n = count(min_wire_size<E>(), sizeof(E) + 48);  // a node each
    v.clear();
    if constexpr (requires { typename U::mapped_type; }) {
      for (std::size_t i = 0; i < n; ++i) {
        auto key = get<typename U::key_type>();
        auto val = get<typename U::mapped_type>();
        v.emplace_hint(v.end(), std::move(key), std::move(val));
      }
    } else {
      for (std::size_t i = 0; i < n; ++i) v.emplace_hint(v.end(), get<typename U::key_type>());
    }
  } else if constexpr (is_specialization_of<U, std::pair>) {
    (*this)(v.first);
    (*this)(v.second);
  } else if constexpr (is_specialization_of<U, std::tuple>) {
    std::apply([this](auto&... e) { ((*this)(e), ...); }, v);
  } else if constexpr (is_specialization_of<U, std::optional>) {
    auto engaged = raw<std::uint8_t>();
    if (engaged > 1) throw protocol_error("procxy: bad optional flag");
    if (engaged)
      v.emplace(get<typename U::value_type>());
    else
      v.reset();
  } else if constexpr (is_specialization_of<U, std::variant>) {
    auto index = raw<std::uint32_t>();
    if (index >= std::variant_size_v<U>)
      throw protocol_error("procxy: variant index " + std::to_string(index) + " out of range");
    decode_variant(v, index, std::make_index_sequence<std::variant_size_v<U>>{});
  } else if constexpr (is_described<U>) {
    boost::mp11::mp_for_each<boost::describe::describe_members<U, described_mods>>(
        [&](auto d) { (*this)(v.*d.pointer); });
    if constexpr (boost::mp11::mp_size<
                      boost::describe::describe_members<U, described_mods>>::value == 0)
      raw<std::uint8_t>();
  } else if constexpr (is_reflected_aggregate<U>) {
    boost::pfr::for_each_field(v, [this](auto& f) { (*this)(f); });
    if constexpr (boost::pfr::tuple_size_v<U> == 0) raw<std::uint8_t>();
  } else {
    reject_untransferable<U>();
  }
}

inline constexpr std::uint32_t no_descriptor = 0xffffffffu;  // an empty unique_fd on the wire

inline void encoder::descriptor(const unique_fd& fd) {
  if (!fd) {
    raw(no_descriptor);
    return;
  }
  auto& list = out_.descriptors();
  const int d = ::fcntl(fd.get(), F_DUPFD_CLOEXEC, 0);
  if (d < 0)
    throw serialization_error("procxy: descriptor " + std::to_string(fd.get()) +
                              " cannot be sent: " + std::generic_category().message(errno));
  list.emplace_back(d);
  raw(static_cast<std::uint32_t>(list.size() - 1));
}

inline unique_fd decoder::descriptor() {
  const auto i = raw<std::uint32_t>();
  if (i == no_descriptor) return unique_fd();
  const std::size_t have = fds_ ? fds_->size() : 0;
  if (i >= have)
    throw protocol_error("procxy: a value refers to descriptor " + std::to_string(i) +
                         " of a message that carries " + std::to_string(have));
  unique_fd& slot = (*fds_)[i];
  if (!slot)
    throw protocol_error("procxy: a value refers to descriptor " + std::to_string(i) +
                         " a second time");
  return std::move(slot);
}

}  // namespace procxy::detail
