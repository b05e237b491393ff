# A hostile child (tests/hostile/hostile_child.cpp): a standalone program that speaks procxy's wire
# format badly on purpose. It uses procxy's wire header only (include/procxy/detail/protocol.hpp) and
# links nothing of procxy. hostile_test starts it with spawn_mode::executable.
add_executable(procxy_hostile_child ${CMAKE_CURRENT_LIST_DIR}/hostile_child.cpp)
target_include_directories(procxy_hostile_child PRIVATE ${PROJECT_SOURCE_DIR}/include)
target_link_libraries(procxy_hostile_child PRIVATE procxy_warnings)
if(TARGET hostile_test)
  target_compile_definitions(hostile_test PRIVATE
    PROCXY_HOSTILE_CHILD="$<TARGET_FILE:procxy_hostile_child>")
  add_dependencies(hostile_test procxy_hostile_child)
endif()

# hygiene_test checks the descriptors of a worker-binary child too: it needs tests/worker's binary.
if(TARGET hygiene_test AND TARGET procxy_test_worker)
  target_compile_definitions(hygiene_test PRIVATE
    PROCXY_TEST_WORKER="$<TARGET_FILE:procxy_test_worker>")
  target_include_directories(hygiene_test PRIVATE ${CMAKE_CURRENT_LIST_DIR}/../worker)
  add_dependencies(hygiene_test procxy_test_worker)
endif()
