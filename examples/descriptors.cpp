// Descriptors as values (README "Descriptors"): a child process that opens files the parent
// cannot (here: makes an in-memory file), and writes into a pipe the parent hands it.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <procxy/procxy.hpp>
#include <stdexcept>
#include <string>

class Reporter {
 public:
  // Builds a report in a memfd and gives the descriptor to the caller.
  procxy::unique_fd make_report(const std::string& title) {
    procxy::unique_fd fd(::memfd_create("report", MFD_CLOEXEC));
    const std::string text =
        "report: " + title + " (written by pid " + std::to_string(::getpid()) + ")\n";
    if (!fd || ::write(fd.get(), text.data(), text.size()) < 0)
      throw std::runtime_error("cannot write the report");
    ::lseek(fd.get(), 0, SEEK_SET);
    return fd;
  }
  // Streams lines into a descriptor the caller owns (a pipe's write end, moved in).
  void stream_to(procxy::unique_fd out, int lines) {
    for (int i = 1; i <= lines; ++i) {
      const std::string line = "line " + std::to_string(i) + "\n";
      if (::write(out.get(), line.data(), line.size()) < 0) return;
    }
  }  // the child's descriptor closes here: the parent reads EOF
};
PROCXY_CLASS(Reporter, make_report, stream_to);

std::string read_all(int fd) {
  std::string out;
  char buf[256];
  for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;)
    out.append(buf, static_cast<std::size_t>(n));
  return out;
}

int main(int argc, char** argv) {
  procxy::init(argc, argv);
  auto reporter = procxy::spawn<Reporter>();

  procxy::unique_fd report = reporter.make_report("descriptors").get();
  std::printf("%s", read_all(report.get()).c_str());

  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return 1;
  procxy::unique_fd read_end(p[0]), write_end(p[1]);
  reporter.stream_to(std::move(write_end), 3).get();  // ours is closed once the call is made
  std::printf("from the pipe:\n%s", read_all(read_end.get()).c_str());
  // read_all returned: EOF, so neither the child's descriptor nor ours is open any more.
  std::printf("pipe read to EOF; our write end %s\n", write_end ? "is open" : "was moved");
}
