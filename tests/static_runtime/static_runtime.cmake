# A program linked with a static C++ runtime (-static-libstdc++): procxy's weak __cxa_throw hook
# must not be the definition in use there, and exceptions must work as without procxy
# (src/backtrace.cpp). Included from tests/CMakeLists.txt.
add_executable(procxy_static_runtime ${CMAKE_CURRENT_LIST_DIR}/static_runtime.cpp)
target_link_libraries(procxy_static_runtime PRIVATE procxy::procxy procxy_warnings)
target_link_options(procxy_static_runtime PRIVATE -static-libstdc++)
add_test(NAME Link.StaticCxxRuntimeThrowsAndCatchesNormally COMMAND procxy_static_runtime)
set_tests_properties(Link.StaticCxxRuntimeThrowsAndCatchesNormally PROPERTIES
  TIMEOUT 120 LABELS link PASS_REGULAR_EXPRESSION "static runtime: all checks passed")
