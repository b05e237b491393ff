add_executable(procxy_test_worker ${CMAKE_CURRENT_LIST_DIR}/worker_main.cpp
                                  ${CMAKE_CURRENT_LIST_DIR}/counter.cpp)
target_link_libraries(procxy_test_worker PRIVATE procxy::procxy procxy_warnings)
# Parents of the worker: spawn_test starts it; crash_test crashes it (crash reports in the worker
# mode); interface_test links no definition of Counter's members (counter.cpp is the worker's
# alone): that it links at all is part of the test.
foreach(t IN ITEMS spawn_test crash_test interface_test)
  if(TARGET ${t})
    target_compile_definitions(${t} PRIVATE PROCXY_TEST_WORKER="$<TARGET_FILE:procxy_test_worker>")
    target_include_directories(${t} PRIVATE ${CMAKE_CURRENT_LIST_DIR})
    add_dependencies(${t} procxy_test_worker)
  endif()
endforeach()
