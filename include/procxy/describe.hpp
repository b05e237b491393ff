// procxy/describe.hpp — PROCXY_CLASS: describe a class once, at namespace scope, in the class's
// own namespace, after its definition.
//
//   PROCXY_CLASS(Calculator, add, divide, histogram, summarize, reset);
//
// Each entry is a method name, an event member (procxy::event<...>), a data member (a property,
// read-only in the parent), or for an overloaded name a parenthesized list of the name and
// each signature to expose, every signature in its own parentheses:
//
//   PROCXY_CLASS(Shape, (scale, (void(double)), (void(double, double))), area);
//
// proxy<Shape> then has members `scale` and `area` that take the same arguments and return
// procxy::future<R>. The description also registers the methods for the child, so a separate
// worker binary that includes it can serve them (it also needs PROCXY_CONSTRUCTOR).
#pragma once

#include <boost/preprocessor/cat.hpp>
#include <boost/preprocessor/control/iif.hpp>
#include <boost/preprocessor/punctuation/is_begin_parens.hpp>
#include <boost/preprocessor/punctuation/remove_parens.hpp>
#include <boost/preprocessor/repetition/enum.hpp>
#include <boost/preprocessor/seq/for_each.hpp>
#include <boost/preprocessor/tuple/elem.hpp>
#include <boost/preprocessor/tuple/pop_front.hpp>
#include <boost/preprocessor/tuple/size.hpp>
#include <boost/preprocessor/variadic/to_seq.hpp>

#include "procxy/event.hpp"
#include "procxy/proxy.hpp"

// -- internals: one entry is `name` or `(name, (sig), (sig)...)`
#define PROCXY_DETAIL_NAME(entry) \
  BOOST_PP_IIF(BOOST_PP_IS_BEGIN_PARENS(entry), PROCXY_DETAIL_NAME_T, PROCXY_DETAIL_NAME_S)(entry)
#define PROCXY_DETAIL_NAME_S(entry) entry
#define PROCXY_DETAIL_NAME_T(entry) BOOST_PP_TUPLE_ELEM(0, entry)

#define PROCXY_DETAIL_OVERLOAD_MP(z, i, data)                                         \
  ::procxy::detail::method_fn<static_cast<::procxy::detail::member_ptr_t<             \
      BOOST_PP_TUPLE_ELEM(0, data),                                                   \
      BOOST_PP_REMOVE_PARENS(BOOST_PP_TUPLE_ELEM(i, BOOST_PP_TUPLE_ELEM(2, data)))>>( \
      &BOOST_PP_TUPLE_ELEM(0, data)::BOOST_PP_TUPLE_ELEM(1, data))>

#define PROCXY_DETAIL_FN_TYPE(C, entry)                                                           \
  BOOST_PP_IIF(BOOST_PP_IS_BEGIN_PARENS(entry), PROCXY_DETAIL_FN_TYPE_T, PROCXY_DETAIL_FN_TYPE_S) \
  (C, entry)
#define PROCXY_DETAIL_FN_TYPE_S(C, entry) ::procxy::detail::member_face_t<&C::entry>
#define PROCXY_DETAIL_FN_TYPE_T(C, entry)                                              \
  ::procxy::detail::overload_set<BOOST_PP_ENUM(                                        \
      BOOST_PP_TUPLE_SIZE(BOOST_PP_TUPLE_POP_FRONT(entry)), PROCXY_DETAIL_OVERLOAD_MP, \
      (C, BOOST_PP_TUPLE_ELEM(0, entry), BOOST_PP_TUPLE_POP_FRONT(entry)))>

#define PROCXY_DETAIL_MEMBER(r, C, entry) PROCXY_DETAIL_FN_TYPE(C, entry) PROCXY_DETAIL_NAME(entry);
#define PROCXY_DETAIL_BIND(r, C, entry) ::procxy::detail::bind_fn(PROCXY_DETAIL_NAME(entry), c);
#define PROCXY_DETAIL_DESCRIBE(r, C, entry) \
  ::procxy::detail::describe_fn(            \
      out,                                  \
      static_cast<::procxy::detail::dependent_t<D, PROCXY_DETAIL_FN_TYPE(C, entry)>*>(nullptr));
// Inside procxy_register<D>(): dependent on D, so nothing is instantiated before it is called.
#define PROCXY_DETAIL_REGISTER(r, C, entry) \
  ::procxy::detail::register_fn(            \
      static_cast<::procxy::detail::dependent_t<D, PROCXY_DETAIL_FN_TYPE(C, entry)>*>(nullptr));

// The typed face of C: one member per entry, binding, and (as a template, so that nothing is
// instantiated until a process that serves C asks) the registration of C's members for the child.
#define PROCXY_DETAIL_FACE(C, interface_only, ...)                                            \
  struct procxy_methods_##C {                                                                 \
    static constexpr bool procxy_interface_only = interface_only;                             \
    BOOST_PP_SEQ_FOR_EACH(PROCXY_DETAIL_MEMBER, C, BOOST_PP_VARIADIC_TO_SEQ(__VA_ARGS__))     \
    void procxy_bind([[maybe_unused]] const ::procxy::detail::binding* c) noexcept {          \
      BOOST_PP_SEQ_FOR_EACH(PROCXY_DETAIL_BIND, C, BOOST_PP_VARIADIC_TO_SEQ(__VA_ARGS__))     \
    }                                                                                         \
    template <class D = void>                                                                 \
    static ::procxy::detail::described_members procxy_describe() {                            \
      ::procxy::detail::described_members out;                                                \
      BOOST_PP_SEQ_FOR_EACH(PROCXY_DETAIL_DESCRIBE, C, BOOST_PP_VARIADIC_TO_SEQ(__VA_ARGS__)) \
      return out;                                                                             \
    }                                                                                         \
    template <class D = void>                                                                 \
    static bool procxy_register() {                                                           \
      BOOST_PP_SEQ_FOR_EACH(PROCXY_DETAIL_REGISTER, C, BOOST_PP_VARIADIC_TO_SEQ(__VA_ARGS__)) \
      return true;                                                                            \
    }                                                                                         \
  };                                                                                          \
  [[maybe_unused]] inline procxy_methods_##C procxy_methods_of(C*) { return {}; }

#define PROCXY_CLASS(C, ...)                \
  PROCXY_DETAIL_FACE(C, false, __VA_ARGS__) \
  inline const bool procxy_registered_##C = procxy_methods_##C::procxy_register()

// Describes C for a parent that does not link C's member functions: the child side (a worker
// binary, or a module loaded by procxy-host) has them and registers them with
// PROCXY_CONSTRUCTOR. The same entries as PROCXY_CLASS; nothing here odr-uses a member of C.
// Such a class cannot be spawned in the parent's own binary (re-exec or fork mode): the child
// has no constructor for it and spawn_error says so.
#define PROCXY_INTERFACE(C, ...) PROCXY_DETAIL_FACE(C, true, __VA_ARGS__) static_assert(true)

// For worker binaries (spawn_mode::executable) and modules: registers the constructor C(Args...)
// that parents will call with spawn<C>(options, args...) (argument types after decay, string-like
// ones as std::string), and C's described members (with PROCXY_INTERFACE nothing else does).
#define PROCXY_CONSTRUCTOR(C, ...)                                        \
  inline const std::uint64_t BOOST_PP_CAT(procxy_ctor_##C##_, __LINE__) = \
      ::procxy::detail::ctor_id<C __VA_OPT__(, ) __VA_ARGS__>
