// expect: procxy: this class is neither an aggregate nor described
// expect-gnu: U = Temperature
#include <procxy/procxy.hpp>

class Temperature {
 public:
  Temperature() = default;
  double kelvin() const { return kelvin_; }

 private:
  double kelvin_ = 0;
};
struct Thermostat {
  Temperature get() { return {}; }
};
PROCXY_CLASS(Thermostat, get);
