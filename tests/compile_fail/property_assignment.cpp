// expect: property_face
// A property mirrors the child's member and is read-only in the parent: the face has no
// assignment operator at all (g++: "no match for 'operator='", clang: "no viable overloaded '='").
#include <procxy/procxy.hpp>

#include <string>

struct Job {
  std::string state;
  void run() {}
};
PROCXY_CLASS(Job, run, state);

void use(procxy::proxy<Job>& j) { j.state = "x"; }
