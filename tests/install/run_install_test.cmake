# cmake -P: installs procxy into a scratch prefix, checks that the installed CMake package and
# procxy.pc hold no path of this machine's build, MOVES the prefix elsewhere, then builds and runs
# tests/install/consumer against the moved copy twice: with find_package (CMake) and with
# `pkg-config --cflags --libs procxy`. Prints "install test: passed" at the very end.
#
#   SOURCE_DIR, WORK_DIR, CXX      procxy's sources, a scratch directory, the C++ compiler
#   BUILD_DIR                      a configured and built procxy to install; or instead
#   CONFIGURE_ARGS                 "|"-separated -D options: configure and build procxy afresh in
#                                  WORK_DIR/build (the library only: tests must be off there)
#   EXPECT_BUILD_TYPE              with CONFIGURE_ARGS: the build type the cache must end up with
#   EXPECT_BACKTRACE               ON: the consumer's backtrace names its throwing function;
#                                  OFF: it is the note of a procxy built without libbacktrace
#   BOOST_DIR, WERROR              passed on to the builds
cmake_minimum_required(VERSION 3.25)
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
  set(out "${out}" PARENT_SCOPE)
endfunction()

set(boost_arg "")
if(BOOST_DIR)
  set(boost_arg -DBoost_DIR=${BOOST_DIR})
endif()

# 1. procxy, built here if asked.
if(DEFINED CONFIGURE_ARGS)
  set(BUILD_DIR ${WORK_DIR}/build)
  string(REPLACE "|" ";" args "${CONFIGURE_ARGS}")
  run(${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${BUILD_DIR} -DCMAKE_CXX_COMPILER=${CXX}
      -DPROCXY_WERROR=${WERROR} ${boost_arg} ${args})
  message("${out}")
  run(${CMAKE_COMMAND} --build ${BUILD_DIR} --parallel 2)
  foreach(dir tests examples fuzz)
    if(EXISTS ${BUILD_DIR}/${dir})
      message(FATAL_ERROR "${BUILD_DIR}/${dir} exists: the tests were configured although "
                          "${CONFIGURE_ARGS} turns them off")
    endif()
  endforeach()
  if(EXPECT_BUILD_TYPE)
    file(STRINGS ${BUILD_DIR}/CMakeCache.txt build_type REGEX "^CMAKE_BUILD_TYPE:")
    if(NOT build_type MATCHES "=${EXPECT_BUILD_TYPE}$")
      message(FATAL_ERROR "expected build type ${EXPECT_BUILD_TYPE}, the cache has ${build_type}")
    endif()
  endif()
endif()

# 2. Install, and look for paths of this machine in what describes the package.
set(staging ${WORK_DIR}/staging/prefix)
run(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${staging})
execute_process(COMMAND ${CXX} -print-file-name=libbacktrace.a OUTPUT_VARIABLE libbacktrace
                OUTPUT_STRIP_TRAILING_WHITESPACE)
get_filename_component(gcc_dir "${libbacktrace}" DIRECTORY)
file(GLOB_RECURSE described ${staging}/*.cmake ${staging}/*.pc)
set(forbidden ${WORK_DIR} ${SOURCE_DIR} ${BUILD_DIR})
if(IS_ABSOLUTE "${gcc_dir}")
  list(APPEND forbidden ${gcc_dir})
endif()
foreach(f IN LISTS described)
  file(READ ${f} text)
  foreach(path IN LISTS forbidden)
    string(FIND "${text}" "${path}" at)
    if(NOT at EQUAL -1)
      message(FATAL_ERROR "${f} names ${path}: the installed package is not relocatable")
    endif()
  endforeach()
endforeach()

# 3. Move the prefix: nothing of it stays where it was installed.
set(prefix ${WORK_DIR}/moved/elsewhere/prefix)
file(MAKE_DIRECTORY ${WORK_DIR}/moved/elsewhere)
file(RENAME ${staging} ${prefix})
file(REMOVE_RECURSE ${WORK_DIR}/staging)
file(GLOB_RECURSE shared_lib ${prefix}/*/libprocxy.so)

function(check_output what)
  message("${what}:\n${out}")
  if(NOT out MATCHES "consumer: add\\(20, 22\\) = 42")
    message(FATAL_ERROR "${what}: no result")
  endif()
  if(EXPECT_BACKTRACE)
    set(expected "consumer: the backtrace names consumer_thrower")
  else()
    set(expected "consumer: backtrace: (no backtrace: procxy was built without libbacktrace")
  endif()
  string(FIND "${out}" "${expected}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "${what}: expected \"${expected}\"")
  endif()
endfunction()

# 4. A CMake consumer: find_package(procxy) in the moved prefix.
run(${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/install/consumer -B ${WORK_DIR}/consumer
    -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_CXX_COMPILER=${CXX} ${boost_arg})
run(${CMAKE_COMMAND} --build ${WORK_DIR}/consumer)
run(${WORK_DIR}/consumer/consumer)
check_output("CMake consumer")
if(NOT out MATCHES "consumer: Hi, consumer \\(module\\)")
  message(FATAL_ERROR "CMake consumer: the module in procxy::host did not answer")
endif()

# 5. A consumer built with pkg-config's flags alone.
find_program(PKG_CONFIG pkg-config REQUIRED)
file(GLOB_RECURSE pc ${prefix}/*/pkgconfig/procxy.pc)
get_filename_component(pc_dir "${pc}" DIRECTORY)
run(${CMAKE_COMMAND} -E env PKG_CONFIG_PATH=${pc_dir} ${PKG_CONFIG} --cflags --libs procxy)
string(STRIP "${out}" flags)
message("pkg-config --cflags --libs procxy: ${flags}")
separate_arguments(flags UNIX_COMMAND "${flags}")
set(rpath "")
if(shared_lib)
  get_filename_component(lib_dir "${shared_lib}" DIRECTORY)
  set(rpath -Wl,-rpath,${lib_dir})
endif()
run(${CXX} -std=c++20 ${SOURCE_DIR}/tests/install/consumer/main.cpp ${flags} ${rpath}
    -o ${WORK_DIR}/consumer-pc)
run(${WORK_DIR}/consumer-pc)
check_output("pkg-config consumer")

message("install test: passed")
