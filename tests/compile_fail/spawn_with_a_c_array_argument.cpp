// expect: procxy: a C array cannot cross a process boundary
// expect: pass a std::array or a std::vector instead
// expect-gnu: U = int [3]
#include <procxy/procxy.hpp>

#include <vector>

struct Histogram {
  explicit Histogram(const int* bins) : bins_(bins, bins + 3) {}
  std::size_t size() const { return bins_.size(); }
  std::vector<int> bins_;
};
PROCXY_CLASS(Histogram, size);

void use() {
  int bins[3] = {1, 2, 3};
  auto h = procxy::spawn<Histogram>({}, bins);
}
