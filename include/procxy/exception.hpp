// procxy/exception.hpp — PROCXY_EXCEPTION: your own exception types, rebuilt in the parent as
// themselves.
//
//   class quota_exceeded : public std::runtime_error {
//    public:
//     quota_exceeded(std::string user, int limit);       // rebuilds from the listed members
//     std::string user;
//     int limit;
//   };
//   PROCXY_EXCEPTION(quota_exceeded, user, limit);       // namespace scope, in its namespace
//
//   try { svc.upload(data).get(); }
//   catch (const quota_exceeded& e) { e.user; e.limit; procxy::remote_info_of(e)->pid(); }
//
// The listed public data members (any transferable types) are the payload. The parent rebuilds
// the exception with E(members...) if that constructor exists, else E(what, members...), where
// `what` is the child's what() as std::string; one of them must exist (a compile error says so).
// The rebuilt object is a procxy::remote<E>, derived from E, so E must not be final.
// Both processes must register the type (the same header does it in both). A child that throws a
// registered type the parent does not know is reported as procxy::remote_error.
#pragma once

#include <boost/preprocessor/seq/enum.hpp>
#include <boost/preprocessor/seq/transform.hpp>
#include <boost/preprocessor/variadic/to_seq.hpp>
#include <exception>
#include <string>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <utility>

#include "procxy/detail/remote_error.hpp"
#include "procxy/error.hpp"

namespace procxy::detail {

template <class Tuple>
struct decayed_tuple;
template <class... T>
struct decayed_tuple<std::tuple<T...>> {
  using type = std::tuple<std::remove_cvref_t<T>...>;
};

template <class E, class Tuple, std::size_t... I>
std::exception_ptr rebuild_exception(remote_info&& info, std::string&& what, Tuple& t,
                                     std::index_sequence<I...>) {
  if constexpr (std::is_constructible_v<E, std::tuple_element_t<I, Tuple>&&...>)
    return std::make_exception_ptr(remote<E>(std::move(info), std::move(std::get<I>(t))...));
  else
    return std::make_exception_ptr(
        remote<E>(std::move(info), std::move(what), std::move(std::get<I>(t))...));
}

template <class E, class Getter>
std::uint64_t register_exception(Getter) {
  static_assert(std::is_base_of_v<std::exception, E>,
                "procxy: PROCXY_EXCEPTION needs a class derived from std::exception");
  static_assert(
      !std::is_final_v<E>,
      "procxy: PROCXY_EXCEPTION needs a non-final class (it is rebuilt as procxy::remote<E>, "
      "derived from E)");
  using refs = decltype(std::declval<Getter>()(std::declval<const E&>()));
  using values = typename decayed_tuple<refs>::type;
  static_assert(
      []<std::size_t... I>(std::index_sequence<I...>) {
        return std::is_constructible_v<E, std::tuple_element_t<I, values>&&...> ||
               std::is_constructible_v<E, std::string&&, std::tuple_element_t<I, values>&&...>;
      }(std::make_index_sequence<std::tuple_size_v<values>>{}),
      "procxy: PROCXY_EXCEPTION(E, members...) needs a constructor E(members...) or "
      "E(std::string what, members...) to rebuild the exception in the parent");
  exception_entry entry;
  entry.type = &typeid(E);
  entry.rebuilt_type = &typeid(remote<E>);
  entry.encode = [](const std::exception& ex, encoder& enc) {
    std::apply([&](const auto&... f) { (enc(f), ...); }, Getter{}(static_cast<const E&>(ex)));
  };
  entry.decode = [](decoder& dec, remote_info&& info, std::string&& what) {
    values v;
    std::apply([&](auto&... f) { (dec(f), ...); }, v);
    return rebuild_exception<E>(std::move(info), std::move(what), v,
                                std::make_index_sequence<std::tuple_size_v<values>>{});
  };
  return register_exception_entry(entry);
}

}  // namespace procxy::detail

#define PROCXY_DETAIL_EXC_FIELD(s, data, field) data.field
#define PROCXY_EXCEPTION(E, ...)                                                          \
  [[maybe_unused]] inline const std::uint64_t procxy_exception_id_##E =                   \
      ::procxy::detail::register_exception<E>([]([[maybe_unused]] const E& procxy_e) {    \
        return std::tie(__VA_OPT__(BOOST_PP_SEQ_ENUM(BOOST_PP_SEQ_TRANSFORM(              \
            PROCXY_DETAIL_EXC_FIELD, procxy_e, BOOST_PP_VARIADIC_TO_SEQ(__VA_ARGS__))))); \
      })
