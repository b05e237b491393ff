// expect: procxy: a property is read-only in the parent
#include <procxy/procxy.hpp>

#include <string>

struct Job {
  std::string state;
  void run() {}
};
PROCXY_CLASS(Job, run, state);

void use(procxy::proxy<Job>& j) { j.state = "x"; }
