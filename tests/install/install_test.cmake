# Each test installs a procxy into a scratch prefix, moves the prefix, and builds and runs
# tests/install/consumer against the moved copy with CMake and with pkg-config
# (run_install_test.cmake). Label install; scripts/run-sanitizers.sh leaves them out.
function(procxy_install_test name)
  cmake_parse_arguments(arg "" "CONFIGURE_ARGS;EXPECT_BUILD_TYPE;EXPECT_BACKTRACE" "" ${ARGN})
  set(build_args -DBUILD_DIR=${PROJECT_BINARY_DIR})
  if(arg_CONFIGURE_ARGS)
    set(build_args "-DCONFIGURE_ARGS=${arg_CONFIGURE_ARGS}" -DEXPECT_BUILD_TYPE=${arg_EXPECT_BUILD_TYPE})
  endif()
  add_test(NAME Install.${name}
    COMMAND ${CMAKE_COMMAND}
      -DSOURCE_DIR=${PROJECT_SOURCE_DIR} ${build_args}
      -DWORK_DIR=${CMAKE_CURRENT_BINARY_DIR}/install_test/${name}
      -DCXX=${CMAKE_CXX_COMPILER} -DBOOST_DIR=${Boost_DIR} -DWERROR=${PROCXY_WERROR}
      -DEXPECT_BACKTRACE=${arg_EXPECT_BACKTRACE}
      -P ${CMAKE_CURRENT_LIST_DIR}/run_install_test.cmake)
  set_tests_properties(Install.${name} PROPERTIES
    TIMEOUT 600 LABELS install PASS_REGULAR_EXPRESSION "install test: passed")
endfunction()

# This build's library (static unless configured with BUILD_SHARED_LIBS).
procxy_install_test(ConsumerBuildsAgainstTheInstalledPackage
  EXPECT_BACKTRACE ${PROCXY_HAS_LIBBACKTRACE})
# A shared libprocxy.so, configured as a consumer would: BUILD_TESTING=OFF and no build type
# (so it must be RelWithDebInfo and build nothing but the library).
procxy_install_test(SharedLibraryFromAPlainConfigure
  CONFIGURE_ARGS "-DBUILD_SHARED_LIBS=ON|-DBUILD_TESTING=OFF"
  EXPECT_BUILD_TYPE RelWithDebInfo EXPECT_BACKTRACE ${PROCXY_HAS_LIBBACKTRACE})
# A static library without backtraces: builds, installs and links without libbacktrace.
procxy_install_test(StaticLibraryWithoutBacktraces
  CONFIGURE_ARGS "-DPROCXY_BACKTRACE=OFF|-DPROCXY_BUILD_TESTS=OFF|-DCMAKE_BUILD_TYPE=Release"
  EXPECT_BUILD_TYPE Release EXPECT_BACKTRACE OFF)
