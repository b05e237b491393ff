// A pool of children (README "Pools"): CPU-bound work spread over the least-loaded members,
// per-key state kept on one member, a broadcast, and a member that crashes being replaced.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "procxy/procxy.hpp"

class PrimeCounter {
 public:
  explicit PrimeCounter(std::string label) : label_(std::move(label)) {}

  // How many primes lie in [from, to): CPU-bound, a few milliseconds per call.
  long count(long from, long to) {
    long n = 0;
    for (long v = from < 2 ? 2 : from; v < to; ++v) {
      bool prime = true;
      for (long d = 2; d * d <= v; ++d)
        if (v % d == 0) {
          prime = false;
          break;
        }
      n += prime;
    }
    ++served_;
    return n;
  }
  // State kept per member: a running total per key lives on the member of that key.
  long remember(long v) { return total_ += v; }
  long served() const { return served_; }
  std::string label() const { return label_; }
  void crash() { std::abort(); }  // a bug that ends the process

 private:
  std::string label_;
  long served_ = 0;
  long total_ = 0;
};
PROCXY_CLASS(PrimeCounter, count, remember, served, label, crash);

int main(int argc, char** argv) {
  procxy::init(argc, argv);

  auto pool = procxy::spawn_pool<PrimeCounter>({.size = 3}, {}, "primes");
  pool.started().get();

  // 1. Work spread over the members: 24 ranges in flight at once.
  std::vector<procxy::future<long>> parts;
  for (long from = 0; from < 240'000; from += 10'000)
    parts.push_back(pool.count(from, from + 10'000));
  long primes = 0;
  for (auto& f : parts) primes += f.get();
  std::printf("primes below 240000: %ld\n", primes);

  // 2. Affinity: the same key always reaches the same member, so its state is there.
  long alice = 0;
  for (long v : {5L, 7L, 30L}) alice = pool.by_key(std::string("alice")).remember(v).get();
  std::printf("alice's total: %ld\n", alice);

  // 3. A broadcast: every member answers.
  long served = 0;
  for (auto& f : pool.broadcast<&PrimeCounter::served>()) served += f.get();
  std::printf("ranges served by %zu members: %ld\n", pool.size(), served);

  // 4. A member crashes: its call fails, the pool replaces it, the pool keeps serving.
  try {
    pool.member(0).crash().get();
  } catch (const procxy::child_crashed& e) {
    std::printf("member 0 crashed: %s\n", e.signal() == SIGABRT ? "SIGABRT" : "another signal");
  }
  std::printf("after the crash: %ld primes below 1000, %llu replacement(s), member 0 is '%s'\n",
              pool.count(0, 1000).get(), static_cast<unsigned long long>(pool.replacements()),
              pool.member(0).label().get().c_str());
  return 0;
}
