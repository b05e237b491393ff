// procxy/init.hpp — the one line a program that spawns children calls first in main().
#pragma once

namespace procxy {

// In a process started by procxy (a child), serves the object the parent asks for and never
// returns: the process exits when the parent terminates it or goes away. In any other process
// it returns at once. Call it first in main(), before anything that should not run in a child.
void init(int argc, char** argv);

// Whether this process is a procxy child (valid after init() returned or inside the child).
bool is_child() noexcept;

}  // namespace procxy
