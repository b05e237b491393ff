// The module: built against procxy::module (headers only), loaded by the installed procxy-host.
#include "greeter.hpp"

Greeter::Greeter(std::string greeting) : greeting_(std::move(greeting)) {}
std::string Greeter::greet(const std::string& who) { return greeting_ + ", " + who + " (module)"; }

PROCXY_CONSTRUCTOR(Greeter, std::string);
