// A parser of untrusted input, loaded as a plugin into procxy-host and run in a sandbox: it may
// compute, and nothing else (no file, no network, no process). Bad input can crash it or make it
// try what the sandbox forbids; the parent reports what happened and carries on with a fresh
// child. The parent links only the declaration (plugin/record_parser.hpp).
#include <chrono>
#include <cstdio>
#include <procxy/procxy.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "plugin/record_parser.hpp"

using namespace std::chrono_literals;

namespace {

procxy::proxy<records::RecordParser> start_parser() {
  procxy::spawn_options o{
      // The host and the module. An installed program can leave `executable` out: procxy-host
      // is then found through $PROCXY_HOST or on PATH.
      .executable = SANDBOXED_PLUGIN_HOST,
      .module = SANDBOXED_PLUGIN_MODULE,
      .sandbox = {
          .limits = {.cpu = 10s, .open_files = 64, .no_core_dumps = true},
          // Computation only: no open, connect, fork or exec; a blocked call ends the child.
          .syscalls = procxy::syscall_profile::strict,
          .on_blocked = procxy::on_blocked_syscall::kill,
          // Nothing to see: no network, no other processes, its own mounts and IPC ...
          .namespaces = {.network = true, .mounts = true, .ipc = true, .pids = true},
          // ... and, by Landlock, no path at all.
          .filesystem = std::vector<procxy::path_rule>{},
      }};
  return procxy::spawn<records::RecordParser>(o, ";");
}

std::string first_line(const char* what) {
  std::string s(what);
  return s.substr(0, s.find('\n'));
}

}  // namespace

int main(int argc, char** argv) {
  procxy::init(argc, argv);
  const std::vector<std::string> inputs = {
      "name:s=ada;born:i=1815",
      "name:s=grace;born:i=19o6",  // rejected by the parser: an exception, not a crash
      "name:s=mallory;born:x=1",   // an unknown type: the parser's bug crashes it
      "@include /etc/passwd",      // reading a file: the sandbox ends the child
      "name:s=alan;born:i=1912",
  };
  auto parser = start_parser();
  int served = 0, restarts = 0;
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    try {
      auto fields = parser.parse(inputs[i]).get();
      std::printf("input %zu: %zu fields:", i, fields.size());
      for (const auto& f : fields) std::printf(" %s=%s", f.name.c_str(), f.value.c_str());
      std::printf("\n");
      ++served;
    } catch (const procxy::child_crashed& e) {
      std::printf("input %zu: the parser's child died: %s\n", i, first_line(e.what()).c_str());
      parser = start_parser();  // a fresh child for the next input
      ++restarts;
    } catch (const std::invalid_argument& e) {
      std::printf("input %zu: rejected: %s\n", i, e.what());
    }
  }
  std::printf("served %d of %zu inputs; %d restarts; the last child parsed %d\n", served,
              inputs.size(), restarts, parser.parsed().get());
  return served == 2 && restarts == 2 ? 0 : 1;
}
