// expect: procxy: this class is neither an aggregate nor described
// expect: describe it with BOOST_DESCRIBE_STRUCT / BOOST_DESCRIBE_CLASS
// expect-gnu: U = Temperature
#include <procxy/procxy.hpp>

class Temperature {
 public:
  explicit Temperature(double k) : kelvin_(k) {}
  double kelvin() const { return kelvin_; }

 private:
  double kelvin_;
};
struct Thermostat {
  void set(Temperature t) { (void)t; }
};
PROCXY_CLASS(Thermostat, set);
