#include "procxy/shared.hpp"

#include <boost/pfr.hpp>
#include <map>
#include <mutex>
#include <typeinfo>

#include "procxy/detail/codec.hpp"

// One child per key (procxy/shared.hpp): the registry, and what makes two spawn_options the same.
// docs/design.md "Shared children".

namespace procxy::detail {

namespace {

template <class F>
void add_field(std::string& out, const std::function<F>& hook) {
  // Two closures cannot be compared; their types can: the same lambda (or function type) in
  // the same place is taken as the same hook, whatever it captured.
  out += hook ? hook.target_type().name() : "-";
  out += '\0';
}

template <class V>
void add_field(std::string& out, const V& v) {
  byte_buffer b;
  encoder e(b, nullptr);
  e(v);
  out.append(reinterpret_cast<const char*>(b.data()), b.size());
}

}  // namespace

std::string options_identity(const spawn_options& o) {
  std::string out;
  boost::pfr::for_each_field(o, [&](const auto& field) { add_field(out, field); });
  return out;
}

std::shared_ptr<void> find_or_make_shared(const std::string& identity,
                                          const std::function<std::shared_ptr<void>()>& make,
                                          bool (*alive)(const std::shared_ptr<void>&)) {
  static std::mutex& mu = *new std::mutex;  // never destroyed: holders may outlive statics
  static auto& live = *new std::map<std::string, std::weak_ptr<void>>;
  std::shared_ptr<void> ended;  // released after the lock: its terminate() may take a while
  std::lock_guard lk(mu);
  std::erase_if(live, [](const auto& entry) { return entry.second.expired(); });
  auto it = live.find(identity);
  if (it != live.end()) {
    auto p = it->second.lock();
    if (p && alive(p)) return p;
    ended = std::move(p);
  }
  auto p = make();
  live[identity] = p;
  return p;
}

}  // namespace procxy::detail
