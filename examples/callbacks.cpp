// The seed's example in C++: a worker in a child process that calls back into its parent, hands
// the parent a function of its own, keeps a listener, and streams one-way notifications.
#include <unistd.h>

#include <cstdio>
#include <functional>
#include <procxy/procxy.hpp>
#include <string>
#include <vector>

struct Tick {
  int seq;
  double value;
};

class Worker {
 public:
  std::string process(const std::vector<std::string>& items,
                      std::function<void(const std::string&)> on_update,
                      std::function<bool(int done, int total)> keep_going) {
    int done = 0;
    for (const auto& item : items) {
      if (!keep_going(done, static_cast<int>(items.size()))) break;
      on_update("child " + std::to_string(::getpid()) + " processed " + item);
      ++done;
    }
    return std::to_string(done) + " of " + std::to_string(items.size()) + " done";
  }
  std::function<int(int)> make_scaler(int factor) {
    return [factor](int x) { return x * factor; };
  }
  void subscribe(std::function<void(Tick)> listener) { listener_ = std::move(listener); }
  void publish(int n) {
    for (int i = 0; i < n; ++i) listener_(Tick{i, i * 0.5});
  }
  void unsubscribe() { listener_ = nullptr; }
  void stream(int n, procxy::notify<void(int)> tick) {
    for (int i = 0; i < n; ++i) tick(i);
  }

 private:
  std::function<void(Tick)> listener_;
};
PROCXY_CLASS(Worker, process, make_scaler, subscribe, publish, unsubscribe, stream);

int main(int argc, char** argv) {
  procxy::init(argc, argv);
  auto w = procxy::spawn<Worker>();

  bool cancelled = false;
  auto r =
      w.process(
           {"a", "b", "c"}, [](const std::string& s) { std::printf("update: %s\n", s.c_str()); },
           [&](int done, int) { return !cancelled && done < 2; })
          .get();
  std::printf("process: %s (parent %d)\n", r.c_str(), static_cast<int>(::getpid()));

  std::function<int(int)> scale = w.make_scaler(3).get();
  std::printf("scale(3) = %d, computed in the child\n", scale(3));

  int ticks = 0;
  w.subscribe([&](Tick t) { ticks += t.seq; }).get();
  w.publish(4).get();
  w.unsubscribe().get();
  std::printf("listener saw ticks summing to %d\n", ticks);

  long long sum = 0;
  w.stream(100000, [&](int i) { sum += i; }).get();
  std::printf("100000 notifications summing to %lld\n", sum);
  auto st = w.stats();
  std::printf("callbacks lent %zu, held %lld\n", st.callbacks_lent,
              static_cast<long long>(st.callbacks_held));
  return sum == 4999950000LL && ticks == 6 && scale(3) == 9 ? 0 : 1;
}
