# Compile-fail tests: CompileFail.<case> compiles tests/compile_fail/<case>.cpp with -fsyntax-only
# (the project's compiler, -std=c++20, procxy's and Boost's include directories) and passes only
# if the compiler FAILS and its output contains every "// expect: <text>" line of the file
# (procxy's static_assert messages). A file whose expectation is "<compiles>" is a control case
# that must compile cleanly (with -Werror), showing that the harness itself works.
#
# Included from tests/CMakeLists.txt.

set(_procxy_cf_dir ${CMAKE_CURRENT_LIST_DIR})
set(_procxy_cf_rsp ${CMAKE_CURRENT_BINARY_DIR}/compile_fail/flags.rsp)

# Boost's include directories, minus the compiler's implicit ones (-I/usr/include breaks
# #include_next in the standard library headers).
get_target_property(_procxy_cf_boost_inc Boost::headers INTERFACE_INCLUDE_DIRECTORIES)
if(NOT _procxy_cf_boost_inc)
  set(_procxy_cf_boost_inc "")
endif()
if(CMAKE_CXX_IMPLICIT_INCLUDE_DIRECTORIES AND _procxy_cf_boost_inc)
  list(REMOVE_ITEM _procxy_cf_boost_inc ${CMAKE_CXX_IMPLICIT_INCLUDE_DIRECTORIES})
endif()
set(_procxy_cf_boost_flags "")
foreach(_dir IN LISTS _procxy_cf_boost_inc)
  string(APPEND _procxy_cf_boost_flags "-isystem\n${_dir}\n")
endforeach()

# Implicit include directories as one anchored regex, to filter them out of procxy's (transitive)
# interface include directories.
set(_procxy_cf_implicit "")
foreach(_dir IN LISTS CMAKE_CXX_IMPLICIT_INCLUDE_DIRECTORIES)
  string(REGEX REPLACE "([][.*+?^$(){}|\\\\])" "\\\\\\1" _dir_re "${_dir}")
  list(APPEND _procxy_cf_implicit "${_dir_re}")
endforeach()
list(JOIN _procxy_cf_implicit "|" _procxy_cf_implicit)
if(_procxy_cf_implicit STREQUAL "")
  set(_procxy_cf_implicit "^$")
else()
  set(_procxy_cf_implicit "^(${_procxy_cf_implicit})$")
endif()
set(_procxy_cf_inc
    "$<FILTER:$<TARGET_PROPERTY:procxy,INTERFACE_INCLUDE_DIRECTORIES>,EXCLUDE,${_procxy_cf_implicit}>")

# One response file for every case: @flags.rsp on the compiler's command line.
file(GENERATE OUTPUT ${_procxy_cf_rsp} CONTENT
"-std=c++20
-fsyntax-only
-Wall
-Wextra
-Wpedantic
-Wshadow
-Wconversion
-Wno-sign-conversion
$<$<BOOL:${_procxy_cf_inc}>:-I$<JOIN:${_procxy_cf_inc},\n-I>>
${_procxy_cf_boost_flags}")

file(GLOB _procxy_cf_cases CONFIGURE_DEPENDS ${_procxy_cf_dir}/*.cpp)
foreach(_src IN LISTS _procxy_cf_cases)
  get_filename_component(_case ${_src} NAME_WE)
  file(STRINGS ${_src} _expect_lines REGEX "^// expect: ")
  if(NOT _expect_lines)
    message(FATAL_ERROR "${_src}: no \"// expect: ...\" line")
  endif()
  list(GET _expect_lines 0 _first)
  string(REGEX REPLACE "^// expect: " "" _first "${_first}")
  if(_first STREQUAL "<compiles>")
    set(_pass_regex "compile-fail harness: compiled as expected")
  else()
    string(REGEX REPLACE "([][.*+?^$(){}|\\\\])" "\\\\\\1" _escaped "${_first}")
    set(_pass_regex "compile-fail harness: failed as expected with: ${_escaped}")
  endif()
  add_test(NAME CompileFail.${_case}
    COMMAND ${CMAKE_COMMAND}
      -DCXX=${CMAKE_CXX_COMPILER}
      -DCXX_ID=${CMAKE_CXX_COMPILER_ID}
      -DRSP=${_procxy_cf_rsp}
      -DSRC=${_src}
      -P ${_procxy_cf_dir}/run_compile_fail.cmake)
  set_tests_properties(CompileFail.${_case} PROPERTIES
    TIMEOUT 180
    LABELS compile_fail
    PASS_REGULAR_EXPRESSION "${_pass_regex}")
endforeach()
