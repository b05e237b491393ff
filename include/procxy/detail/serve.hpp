// procxy/detail/serve.hpp — entry points shared by init() and the fork spawn mode.
#pragma once

#include <sys/types.h>

#include <cstddef>

namespace procxy::detail {

// Serves the object the parent constructs over `fd` until shutdown or EOF; returns the exit code.
// With shm_fd >= 0 the bytes go through the shared-memory rings of that memfd (shm_ring bytes
// each) and `fd` only tells the parent's hang-up. With crash_fd >= 0 (the write end of the crash
// pipe) a crash signal writes the stack there first (src/crash.hpp).
int serve(int fd, int shm_fd, std::size_t shm_ring, std::size_t max_message_size, pid_t parent,
          int crash_fd = -1);
// argv[0] of this program, for the re-executed child's argv[0].
void set_program_name(const char* argv0);
const char* program_name() noexcept;

}  // namespace procxy::detail
