// expect: procxy: this class is neither an aggregate nor described
// expect: make it a plain aggregate (public fields, no constructors)
// expect-gnu: U = Temperature
#include <procxy/procxy.hpp>

class Temperature {
 public:
  Temperature() = default;
  explicit Temperature(double k) : kelvin_(k) {}

 private:
  double kelvin_ = 0;
};
struct Thermostat {
  void set(const Temperature& t) { (void)t; }
};
PROCXY_CLASS(Thermostat, set);
