// procxy/options.hpp — how a child is started and how its calls behave.
//
//   auto calc = procxy::spawn<Calculator>({.call_timeout = 5s, .env = {{"LANG", "C"}}}, 4);
//
// Every field has a default that works; designated initializers name only what you change.
#pragma once

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace procxy {

enum class spawn_mode {
  // Start the current executable again (/proc/self/exe) with posix_spawn; the child calls
  // procxy::init() from main and serves the object. Safe in multi-threaded parents. Default.
  reexec,
  // Start `spawn_options::executable`, a worker binary built with procxy that registers the
  // class (PROCXY_CLASS) and its constructor (PROCXY_CONSTRUCTOR) and calls procxy::init().
  executable,
  // fork() without exec: the fastest start, but the child is a copy of a possibly multi-threaded
  // parent. Only the forking thread exists in the child; locks held by other threads at the time
  // of the fork (malloc's, iostreams', your own) stay locked forever. Use it only from parents
  // that are single-threaded when they spawn, or that know what they are doing.
  fork,
};

enum class env_mode {
  merge,    // the parent's environment, with `env` entries added or overriding
  replace,  // only the entries in `env`
};

struct spawn_options {
  // A call that has not completed after this long fails with timeout_error (0 = no limit).
  // The child is kept and the late reply dropped (docs/design.md, "Timeouts").
  std::chrono::milliseconds call_timeout{0};
  // The child must have constructed the object within this long, or every call fails with
  // spawn_error and the child is killed (0 = no limit).
  std::chrono::milliseconds start_timeout{std::chrono::seconds(30)};
  // terminate(): how long the object's destructor may take before SIGTERM, then SIGKILL.
  std::chrono::milliseconds terminate_grace{std::chrono::seconds(2)};

  spawn_mode mode = spawn_mode::reexec;
  std::filesystem::path executable{};  // for spawn_mode::executable
  std::vector<std::string> args{};     // extra argv entries after argv[0]
  std::map<std::string, std::string> env{};
  env_mode environment = env_mode::merge;
  std::filesystem::path working_directory{};  // empty: the parent's

  // Largest message either side accepts (frame body, bytes). Larger → protocol_error.
  std::size_t max_message_size = std::size_t{256} << 20;
};

}  // namespace procxy
