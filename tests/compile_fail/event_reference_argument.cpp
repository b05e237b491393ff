// expect: procxy: event arguments are values
#include <procxy/procxy.hpp>

#include <string>

struct Job {
  procxy::event<const std::string&> named;
  void run() {}
};
PROCXY_CLASS(Job, run, named);
