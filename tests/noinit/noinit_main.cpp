// A program that forgets procxy::init: its child (this binary again) runs main() and spawns in
// turn. That spawn must be refused, so the chain stops at one child and the parent's error names
// the fix; before, every child spawned a grandchild without end (an outside user counted 1,571
// processes after 4 s, surviving the parent's death).
#include <cstdio>
#include <cstdlib>
#include <string>

#include "procxy/procxy.hpp"

struct Echo {
  int twice(int x) { return 2 * x; }
};
PROCXY_CLASS(Echo, twice);

int main() {  // no procxy::init(argc, argv): the mistake under test
  // The child runs this main too; only the parent's verdict counts (the child's spawn throws).
  const char* who = std::getenv("PROCXY_CHANNEL_FD") ? "child" : "parent";
  try {
    auto e =
        procxy::spawn<Echo>({.start_timeout = std::chrono::seconds(20), .capture_stderr = 4096});
    e.started().get();
    std::printf("noinit %s: started, but it must not\n", who);
    return 1;
  } catch (const procxy::spawn_error& err) {
    const std::string what = err.what();
    const bool names_fix = what.find("procxy::init") != std::string::npos;
    std::printf("noinit %s: spawn_error%s\n%s\n", who, names_fix ? " naming procxy::init" : "",
                err.what());
    return names_fix ? 0 : 1;
  }
}
