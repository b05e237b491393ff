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
  double record(Reading r) { return r.value; }
};
PROCXY_CLASS(Meter, record);
