# Schema for the Cap'n Proto variant of bench/codec_bench.cpp (codec comparison benchmark).
@0xcc55ae01e1315c42;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("procxy_bench::capnp_schema");

# (a) the arguments of add(double, double)
struct AddArgs {
  a @0 :Float64;
  b @1 :Float64;
}

# (b) std::vector<std::string>
struct StringList {
  items @0 :List(Text);
}

# (c) std::vector<std::byte>
struct Blob {
  data @0 :Data;
}
