# cmake -DCXX=<compiler> -DRSP=<flags.rsp> -DSRC=<case.cpp> -P run_compile_fail.cmake
#
# Compiles SRC. A case whose first "// expect:" line is "<compiles>" must compile (with -Werror);
# any other case must fail to compile with every "// expect: <text>" text in the diagnostics.
# Prints a "compile-fail harness: ..." line that the test's PASS_REGULAR_EXPRESSION matches only
# on success; any mismatch ends with FATAL_ERROR and the compiler's output.

foreach(var CXX RSP SRC)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "run_compile_fail.cmake: -D${var}=... is required")
  endif()
endforeach()

file(STRINGS ${SRC} expect_lines REGEX "^// expect: ")
set(expected "")
foreach(line IN LISTS expect_lines)
  string(REGEX REPLACE "^// expect: " "" text "${line}")
  list(APPEND expected "${text}")
endforeach()
list(GET expected 0 first)

if(first STREQUAL "<compiles>")
  execute_process(COMMAND ${CXX} @${RSP} -Werror ${SRC}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "control case ${SRC} must compile but failed (rc=${rc}):\n${out}")
  endif()
  message("compile-fail harness: compiled as expected")
  return()
endif()

execute_process(COMMAND ${CXX} @${RSP} ${SRC}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
if(rc EQUAL 0)
  message(FATAL_ERROR "${SRC} compiled, but it must fail with \"${first}\"\n${out}")
endif()
# "// expect-gnu: <text>": the offending type as g++ names it in the instantiation context
# ("[with U = Temperature]"), so each message is checked to name the type as well as the fix.
if(CXX_ID STREQUAL "GNU")
  file(STRINGS ${SRC} gnu_lines REGEX "^// expect-gnu: ")
  foreach(line IN LISTS gnu_lines)
    string(REGEX REPLACE "^// expect-gnu: " "" text "${line}")
    list(APPEND expected "${text}")
  endforeach()
endif()
foreach(text IN LISTS expected)
  string(FIND "${out}" "${text}" pos)
  if(pos EQUAL -1)
    message(FATAL_ERROR "${SRC} failed to compile (rc=${rc}) but without \"${text}\":\n${out}")
  endif()
endforeach()
message("compile-fail harness: failed as expected with: ${first}")
