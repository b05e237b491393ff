// procxy/procxy.hpp — everything: include this.
#pragma once

#include "procxy/describe.hpp"
#include "procxy/error.hpp"
#include "procxy/event.hpp"
#include "procxy/exception.hpp"
#include "procxy/future.hpp"
#include "procxy/init.hpp"
#include "procxy/options.hpp"
#include "procxy/pool.hpp"
#include "procxy/proxy.hpp"
#include "procxy/shared.hpp"
#include "procxy/stats.hpp"
#include "procxy/unique_fd.hpp"
