// procxy-host: the generic child for spawn_options::module. procxy::init loads the module named
// by the parent (its static initialisers register its classes and constructors) and serves.
// Linked with the whole of libprocxy and with its symbols exported, so that a module links no
// copy of procxy of its own and registers into this process's tables.
#include <cstdio>

#include "procxy/init.hpp"

int main(int argc, char** argv) {
  procxy::init(argc, argv);  // in a child: serves and never returns
  std::fprintf(stderr,
               "procxy-host: a generic child for procxy::spawn with spawn_options::module; it is "
               "started by procxy, not by hand\n");
  return 2;
}
