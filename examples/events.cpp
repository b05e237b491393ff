// Events, properties and dispose: a job in a child process reports progress, asks its parent for
// input through an event that carries a callback (the seed's case), exposes read-only
// properties, and finally asks to be disposed of.
#include <chrono>
#include <cstdio>
#include <functional>
#include <future>
#include <procxy/procxy.hpp>
#include <string>

class Job {
 public:
  procxy::event<int, int> progress;                       // (done, total)
  procxy::event<std::function<void(double)>> need_input;  // the argument is a callback
  procxy::event<> finished;
  int processed = 0;  // properties
  std::string state = "idle";

  // Asks the parent; its answer arrives as a call of the callback, run here after configure().
  void configure() {
    need_input.emit([this](double scale) { scale_ = scale; });
  }
  void run(int n) {
    state = "running";
    for (int i = 1; i <= n; ++i) {
      processed += static_cast<int>(10 * scale_);
      progress.emit(i, n);
    }
    state = "done";
    finished.emit();
  }
  void quit() { procxy::this_child().dispose(); }

 private:
  double scale_ = 1;
};
PROCXY_CLASS(Job, configure, run, quit, progress, need_input, finished, processed, state);

int main(int argc, char** argv) {
  procxy::init(argc, argv);
  std::promise<bool> disposed;
  auto job = procxy::spawn<Job>(
      {.on_exit = [&](const procxy::exit_info& i) { disposed.set_value(i.disposed); }});
  std::printf("state before: %s\n", job.state().c_str());

  int last = 0;
  procxy::subscription s = job.progress().on([&](int done, int total) {
    last = done;
    if (done % 25 == 0)
      std::printf("progress %d/%d (processed so far: %d)\n", done, total, job.processed());
  });
  job.need_input().once(
      [](std::function<void(double)> reply) { reply(0.5); });  // runs in the child
  job.finished().once([] { std::printf("finished\n"); });

  job.configure().get();
  job.run(100).get();  // every event of run() was delivered before this returns
  std::printf("after run: last progress %d, processed %d, state %s\n", last, job.processed(),
              job.state().c_str());
  job.quit().get();  // the child asks to be disposed of; on_exit says so once it is gone
  auto f = disposed.get_future();
  bool was_disposed = f.wait_for(std::chrono::seconds(10)) == std::future_status::ready && f.get();
  std::printf("disposed: %s, stats: %llu events received\n", was_disposed ? "yes" : "no",
              static_cast<unsigned long long>(job.stats().events_received));
  return 0;
}
