# Installs procxy into a scratch prefix, builds tests/install/consumer against it, runs it.
add_test(NAME Install.ConsumerBuildsAgainstTheInstalledPackage
  COMMAND ${CMAKE_COMMAND}
    -DSOURCE_DIR=${PROJECT_SOURCE_DIR} -DBUILD_DIR=${PROJECT_BINARY_DIR}
    -DWORK_DIR=${CMAKE_CURRENT_BINARY_DIR}/install_test
    -DCXX=${CMAKE_CXX_COMPILER}
    -P ${CMAKE_CURRENT_LIST_DIR}/run_install_test.cmake)
set_tests_properties(Install.ConsumerBuildsAgainstTheInstalledPackage PROPERTIES
  TIMEOUT 300 PASS_REGULAR_EXPRESSION "consumer: add\\(20, 22\\) = 42")
