// expect: procxy: a described value type must be default-constructible to be decoded
// expect-gnu: W = Reading
#include <procxy/procxy.hpp>

#include <boost/describe/class.hpp>

struct Reading {
  explicit Reading(double v) : value(v) {}
  double value;
};
BOOST_DESCRIBE_STRUCT(Reading, (), (value))

struct Meter {
  Reading last() { return Reading(1.0); }
};
PROCXY_CLASS(Meter, last);

void use(procxy::proxy<Meter>& m) { (void)m.last(); }
