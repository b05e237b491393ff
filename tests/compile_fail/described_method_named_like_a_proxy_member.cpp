// expect: procxy: PROCXY_CLASS lists a method named pid, running, started, terminate, stats, call, with, with_timeout or idempotent
// expect: call it as proxy.call<&T::name>(args...)
#include <procxy/procxy.hpp>

struct Job {
  void terminate() {}
  int progress() { return 0; }
};
PROCXY_CLASS(Job, terminate, progress);

void use(procxy::proxy<Job>& j) { (void)j.progress(); }
