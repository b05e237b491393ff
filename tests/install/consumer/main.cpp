#include <procxy/procxy.hpp>

#include <cstdio>

struct Adder {
  int add(int a, int b) { return a + b; }
};
PROCXY_CLASS(Adder, add);

int main(int argc, char** argv) {
  procxy::init(argc, argv);
  auto a = procxy::spawn<Adder>();
  int r = a.add(20, 22).get();
  std::printf("consumer: add(20, 22) = %d\n", r);
  return r == 42 ? 0 : 1;
}
