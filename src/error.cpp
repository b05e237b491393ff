#include "procxy/error.hpp"

#include <cxxabi.h>

#include <cstdlib>
#include <cstring>
#include <future>
#include <memory>
#include <new>
#include <stdexcept>
#include <system_error>
#include <typeindex>
#include <typeinfo>
#include <unordered_map>

#include "procxy/detail/method.hpp"
#include "procxy/detail/remote_error.hpp"

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
  registered,           // a PROCXY_EXCEPTION type
  spawn_error,          // procxy's own: the child has no constructor for the construct request
  last = spawn_error,
};

enum class category_code : std::uint8_t { generic = 0, system = 1, other = 2 };

// E itself, or E as rebuilt from the other process (an exception passing through, e.g. thrown by a
// parent callback inside a child method).
template <class E>
bool is_exactly(const std::exception& e) {
  return typeid(e) == typeid(E) || typeid(e) == typeid(remote<E>);
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
  if (is_exactly<spawn_error>(e)) return exception_code::spawn_error;
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

// PROCXY_EXCEPTION types, by wire id and by type. Written during static initialisation only.
struct exception_registry {
  std::unordered_map<std::uint64_t, exception_entry> by_id;
  std::unordered_map<std::type_index, std::uint64_t> by_type;
};
exception_registry& registry() {
  static exception_registry& r = *new exception_registry;  // never destroyed (exit() on any thread)
  return r;
}

template <class E, class... A>
std::exception_ptr rebuilt(remote_info&& info, A&&... a) {
  return std::make_exception_ptr(remote<E>(std::move(info), std::forward<A>(a)...));
}

}  // namespace

std::uint64_t register_exception_entry(const exception_entry& e) {
  auto id = hash_name(e.type->name());
  auto& r = registry();
  r.by_id.emplace(id, e);
  r.by_type.emplace(std::type_index(*e.type), id);
  if (e.rebuilt_type) r.by_type.emplace(std::type_index(*e.rebuilt_type), id);
  return id;
}

std::string readable_type_name(const std::type_info& t) {
  std::string s = demangle(t.name());
  static constexpr std::string_view long_string =
      "std::__cxx11::basic_string<char, std::char_traits<char>, std::allocator<char> >";
  for (auto at = s.find(long_string); at != std::string::npos; at = s.find(long_string, at))
    s.replace(at, long_string.size(), "std::string");
  return s;
}

std::string demangle(const char* mangled) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> p(abi::__cxa_demangle(mangled, nullptr, nullptr, &status),
                                           std::free);
  return status == 0 && p ? std::string(p.get()) : std::string(mangled);
}

void encode_current_exception(encoder& e) {
  const std::type_info* thrown = abi::__cxa_current_exception_type();
  std::string trace = throw_backtraces_enabled() ? take_throw_backtrace(thrown) : std::string();
  try {
    throw;
  } catch (const std::exception& ex) {
    auto reg = registry().by_type.find(std::type_index(typeid(ex)));
    auto code = reg != registry().by_type.end() ? exception_code::registered : classify(ex);
    e.raw(static_cast<std::uint8_t>(code));
    const auto* passing = dynamic_cast<const remote_info*>(&ex);
    e(passing ? passing->type_name() : demangle(typeid(ex).name()));
    e(std::string_view(ex.what()));
    e(trace);
    if (code == exception_code::system_error) {
      const auto& se = static_cast<const std::system_error&>(ex);
      e.raw(static_cast<std::int32_t>(se.code().value()));
      const auto& cat = se.code().category();
      auto cc = cat == std::generic_category()  ? category_code::generic
                : cat == std::system_category() ? category_code::system
                                                : category_code::other;
      e.raw(static_cast<std::uint8_t>(cc));
      e(std::string_view(cat.name()));
    } else if (code == exception_code::registered) {
      e.raw(reg->second);
      // Length-prefixed, so a parent that does not know the type can skip it.
      auto& out = e.buffer();
      std::size_t at = out.size();
      e.raw(std::uint32_t{0});
      registry().by_id.at(reg->second).encode(ex, e);
      auto n = static_cast<std::uint32_t>(out.size() - at - sizeof(std::uint32_t));
      std::memcpy(out.data() + at, &n, sizeof n);
    }
  } catch (...) {
    e.raw(static_cast<std::uint8_t>(exception_code::other));
    e(thrown ? demangle(thrown->name()) : std::string("unknown"));
    e(std::string_view("(an exception not derived from std::exception)"));
    e(trace);
  }
}

std::exception_ptr decode_remote_error(decoder& d, const char* method, int pid) {
  auto code = d.raw<std::uint8_t>();
  if (code > static_cast<std::uint8_t>(exception_code::last))
    throw protocol_error("procxy: unknown exception code " + std::to_string(code));
  auto type_name = d.get<std::string>();
  auto what = d.get<std::string>();
  auto trace = d.get<std::string>();
  std::string where = method ? method : "the child";
  remote_info info(pid, where, type_name, std::move(trace));
  auto as_remote_error = [&](const std::string& detail) {
    std::string msg = type_name + " thrown by " + where;
    if (pid > 0) msg += " in child " + std::to_string(pid);
    msg += ": " + detail;
    if (!info.backtrace().empty()) msg += "\n" + info.backtrace();
    return std::make_exception_ptr(remote_error(std::move(info), msg));
  };
  switch (static_cast<exception_code>(code)) {
    case exception_code::exception: return rebuilt<plain_exception>(std::move(info), what);
    case exception_code::logic_error: return rebuilt<std::logic_error>(std::move(info), what);
    case exception_code::invalid_argument:
      return rebuilt<std::invalid_argument>(std::move(info), what);
    case exception_code::domain_error: return rebuilt<std::domain_error>(std::move(info), what);
    case exception_code::length_error: return rebuilt<std::length_error>(std::move(info), what);
    case exception_code::out_of_range: return rebuilt<std::out_of_range>(std::move(info), what);
    case exception_code::runtime_error: return rebuilt<std::runtime_error>(std::move(info), what);
    case exception_code::range_error: return rebuilt<std::range_error>(std::move(info), what);
    case exception_code::overflow_error: return rebuilt<std::overflow_error>(std::move(info), what);
    case exception_code::underflow_error:
      return rebuilt<std::underflow_error>(std::move(info), what);
    case exception_code::bad_alloc: return rebuilt<std::bad_alloc>(std::move(info));
    case exception_code::system_error: {
      auto value = d.raw<std::int32_t>();
      auto cat = d.raw<std::uint8_t>();
      auto cat_name = d.get<std::string>();
      if (cat > static_cast<std::uint8_t>(category_code::other))
        throw protocol_error("procxy: unknown error category code");
      if (cat == static_cast<std::uint8_t>(category_code::other))
        return as_remote_error(what + " [category " + cat_name + ", value " +
                               std::to_string(value) + "]");
      // what() of a system_error already ends with the code's message; keep it verbatim.
      const auto& c = cat == 0 ? std::generic_category() : std::system_category();
      std::string msg = what;
      std::string suffix = ": " + std::error_code(value, c).message();
      if (msg.size() >= suffix.size() &&
          msg.compare(msg.size() - suffix.size(), suffix.size(), suffix) == 0)
        msg.resize(msg.size() - suffix.size());
      return rebuilt<std::system_error>(std::move(info), value, c, msg);
    }
    case exception_code::serialization_error:
      return std::make_exception_ptr(serialization_error(what));
    case exception_code::spawn_error: return std::make_exception_ptr(spawn_error(what));
    case exception_code::registered: {
      auto id = d.raw<std::uint64_t>();
      auto n = d.raw<std::uint32_t>();
      if (n > d.reader().remaining())
        throw protocol_error("procxy: exception payload of " + std::to_string(n) +
                             " bytes exceeds the message");
      byte_reader payload(std::span<const std::byte>(d.reader().take(n), n));
      auto it = registry().by_id.find(id);
      if (it == registry().by_id.end())
        return as_remote_error(what + " (type not registered in the parent)");
      decoder pd(payload, d.context());
      auto ex = it->second.decode(pd, std::move(info), std::move(what));
      if (!payload.at_end())
        throw protocol_error("procxy: trailing bytes after an exception payload");
      return ex;
    }
    case exception_code::other: return as_remote_error(what);
  }
  return {};
}

}  // namespace detail
}  // namespace procxy
