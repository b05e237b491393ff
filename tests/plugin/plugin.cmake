# A module (shared library) holding plugin_demo::Parser, loaded by procxy-host; plugin_test is its
# parent and links neither the module nor Parser's members. The module links no procxy either:
# procxy's headers only (procxy-host exports the library's symbols).
add_library(procxy_test_parser MODULE ${CMAKE_CURRENT_LIST_DIR}/parser_module.cpp)
target_link_libraries(procxy_test_parser PRIVATE procxy::module procxy_warnings)
if(TARGET plugin_test)
  target_compile_definitions(plugin_test PRIVATE
    PROCXY_TEST_HOST="$<TARGET_FILE:procxy_host>"
    PROCXY_TEST_MODULE="$<TARGET_FILE:procxy_test_parser>")
  target_include_directories(plugin_test PRIVATE ${CMAKE_CURRENT_LIST_DIR})
  add_dependencies(plugin_test procxy_host procxy_test_parser)
endif()
