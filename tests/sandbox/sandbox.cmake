# The sandbox's tests (tests/sandbox_test.cpp), over each transport like the other process tests,
# and procxy's own suites again with PROCXY_SANDBOX=strict: the strict profile must not break
# calls, callbacks or events, over either transport. Labels socket-sandbox and shm-sandbox, so
# `ctest -L sandbox` runs all of these and `ctest -L socket` / `-L shm` still a transport's half
# (gtest_discover_tests cannot pass a list as one property: hence one label, and the second
# variable through ENVIRONMENT_MODIFICATION).
procxy_test(sandbox_test ${CMAKE_CURRENT_LIST_DIR}/../sandbox_test.cpp)
target_include_directories(sandbox_test PRIVATE ${CMAKE_CURRENT_LIST_DIR}/..)
add_executable(procxy_sandbox_worker ${CMAKE_CURRENT_LIST_DIR}/worker.cpp)
target_link_libraries(procxy_sandbox_worker PRIVATE procxy::procxy procxy_warnings)
target_compile_definitions(sandbox_test PRIVATE PROCXY_SANDBOX_WORKER="$<TARGET_FILE:procxy_sandbox_worker>")
add_dependencies(sandbox_test procxy_sandbox_worker)
gtest_discover_tests(sandbox_test TEST_PREFIX "socket." DISCOVERY_TIMEOUT 60
                     PROPERTIES TIMEOUT 120 ENVIRONMENT PROCXY_TRANSPORT=socket LABELS socket-sandbox)
gtest_discover_tests(sandbox_test TEST_PREFIX "shm." DISCOVERY_TIMEOUT 60
                     PROPERTIES TIMEOUT 120 ENVIRONMENT PROCXY_TRANSPORT=shared_memory LABELS shm-sandbox)

foreach(t IN ITEMS proxy_test callback_test event_test)
  if(TARGET ${t})
    gtest_discover_tests(${t} TEST_PREFIX "strict.socket." DISCOVERY_TIMEOUT 60
                         PROPERTIES TIMEOUT 120 ENVIRONMENT PROCXY_TRANSPORT=socket ENVIRONMENT_MODIFICATION PROCXY_SANDBOX=set:strict
                         LABELS socket-sandbox)
    gtest_discover_tests(${t} TEST_PREFIX "strict.shm." DISCOVERY_TIMEOUT 60
                         PROPERTIES TIMEOUT 120 ENVIRONMENT PROCXY_TRANSPORT=shared_memory ENVIRONMENT_MODIFICATION PROCXY_SANDBOX=set:strict
                         LABELS shm-sandbox)
  endif()
endforeach()
