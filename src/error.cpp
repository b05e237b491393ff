#include <cxxabi.h>

#include <cstdlib>
#include <future>
#include <memory>
#include <new>
#include <stdexcept>
#include <system_error>
#include <typeinfo>

#include "procxy/detail/remote_error.hpp"
#include "procxy/error.hpp"

namespace procxy {

const char* to_string(error_kind k) noexcept {
  switch (k) {
    case error_kind::spawn: return "spawn";
    case error_kind::timeout: return "timeout";
    case error_kind::child_crashed: return "child_crashed";
    case error_kind::terminated: return "terminated";
    case error_kind::protocol: return "protocol";
    case error_kind::serialization: return "serialization";
    case error_kind::remote: return "remote";
  }
  return "unknown";
}

namespace detail {

namespace {

enum class exception_code : std::uint8_t {
  other = 0,
  exception,
  logic_error,
  invalid_argument,
  domain_error,
  length_error,
  out_of_range,
  runtime_error,
  range_error,
  overflow_error,
  underflow_error,
  bad_alloc,
  system_error,
  serialization_error,  // procxy's own: a result too large or not encodable in the child
  last = serialization_error,
};

enum class category_code : std::uint8_t { generic = 0, system = 1, other = 2 };

template <class E>
bool is_exactly(const std::exception& e) {
  return typeid(e) == typeid(E);
}

exception_code classify(const std::exception& e) {
  if (is_exactly<std::invalid_argument>(e)) return exception_code::invalid_argument;
  if (is_exactly<std::domain_error>(e)) return exception_code::domain_error;
  if (is_exactly<std::length_error>(e)) return exception_code::length_error;
  if (is_exactly<std::out_of_range>(e)) return exception_code::out_of_range;
  if (is_exactly<std::logic_error>(e)) return exception_code::logic_error;
  if (is_exactly<std::range_error>(e)) return exception_code::range_error;
  if (is_exactly<std::overflow_error>(e)) return exception_code::overflow_error;
  if (is_exactly<std::underflow_error>(e)) return exception_code::underflow_error;
  if (is_exactly<std::runtime_error>(e)) return exception_code::runtime_error;
  if (is_exactly<std::bad_alloc>(e)) return exception_code::bad_alloc;
  if (is_exactly<std::system_error>(e)) return exception_code::system_error;
  if (is_exactly<std::exception>(e)) return exception_code::exception;
  if (is_exactly<serialization_error>(e)) return exception_code::serialization_error;
  return exception_code::other;
}

// std::exception itself cannot carry a message; this keeps what() across the boundary.
class plain_exception : public std::exception {
 public:
  explicit plain_exception(std::string w) : what_(std::move(w)) {}
  const char* what() const noexcept override { return what_.c_str(); }

 private:
  std::string what_;
};

}  // namespace

std::string demangle(const char* mangled) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> p(abi::__cxa_demangle(mangled, nullptr, nullptr, &status),
                                          std::free);
  return status == 0 && p ? std::string(p.get()) : std::string(mangled);
}

void encode_current_exception(encoder& e) {
  try {
    throw;
  } catch (const std::exception& ex) {
    auto code = classify(ex);
    e.raw(static_cast<std::uint8_t>(code));
    e(demangle(typeid(ex).name()));
    e(std::string_view(ex.what()));
    if (code == exception_code::system_error) {
      const auto& se = static_cast<const std::system_error&>(ex);
      e.raw(static_cast<std::int32_t>(se.code().value()));
      const auto& cat = se.code().category();
      auto cc = cat == std::generic_category()  ? category_code::generic
                : cat == std::system_category() ? category_code::system
                                                : category_code::other;
      e.raw(static_cast<std::uint8_t>(cc));
      e(std::string_view(cat.name()));
    }
  } catch (...) {
    e.raw(static_cast<std::uint8_t>(exception_code::other));
    const std::type_info* t = abi::__cxa_current_exception_type();
    e(t ? demangle(t->name()) : std::string("unknown"));
    e(std::string_view("(an exception not derived from std::exception)"));
  }
}

std::exception_ptr decode_remote_error(decoder& d, const char* method) {
  auto code = d.raw<std::uint8_t>();
  if (code > static_cast<std::uint8_t>(exception_code::last))
    throw protocol_error("procxy: unknown exception code " + std::to_string(code));
  auto type_name = d.get<std::string>();
  auto what = d.get<std::string>();
  switch (static_cast<exception_code>(code)) {
    case exception_code::exception: return std::make_exception_ptr(plain_exception(what));
    case exception_code::logic_error: return std::make_exception_ptr(std::logic_error(what));
    case exception_code::invalid_argument: return std::make_exception_ptr(std::invalid_argument(what));
    case exception_code::domain_error: return std::make_exception_ptr(std::domain_error(what));
    case exception_code::length_error: return std::make_exception_ptr(std::length_error(what));
    case exception_code::out_of_range: return std::make_exception_ptr(std::out_of_range(what));
    case exception_code::runtime_error: return std::make_exception_ptr(std::runtime_error(what));
    case exception_code::range_error: return std::make_exception_ptr(std::range_error(what));
    case exception_code::overflow_error: return std::make_exception_ptr(std::overflow_error(what));
    case exception_code::underflow_error: return std::make_exception_ptr(std::underflow_error(what));
    case exception_code::bad_alloc: return std::make_exception_ptr(std::bad_alloc());
    case exception_code::system_error: {
      auto value = d.raw<std::int32_t>();
      auto cat = d.raw<std::uint8_t>();
      auto cat_name = d.get<std::string>();
      if (cat > static_cast<std::uint8_t>(category_code::other))
        throw protocol_error("procxy: unknown error category code");
      if (cat == static_cast<std::uint8_t>(category_code::other))
        return std::make_exception_ptr(remote_error(
            type_name, what + " [category " + cat_name + ", value " + std::to_string(value) + "]"));
      // what() of a system_error already ends with the code's message; keep it verbatim.
      const auto& c = cat == 0 ? std::generic_category() : std::system_category();
      std::string msg = what;
      std::string suffix = ": " + std::error_code(value, c).message();
      if (msg.size() >= suffix.size() && msg.compare(msg.size() - suffix.size(), suffix.size(), suffix) == 0)
        msg.resize(msg.size() - suffix.size());
      return std::make_exception_ptr(std::system_error(value, c, msg));
    }
    case exception_code::serialization_error:
      return std::make_exception_ptr(serialization_error(what));
    case exception_code::other:
      return std::make_exception_ptr(remote_error(
          type_name, type_name + " thrown by " + (method ? method : "the child") + ": " + what));
  }
  return {};
}

}  // namespace detail
}  // namespace procxy
