# cmake --install: headers, the library, a CMake package (find_package(procxy CONFIG)) and a
# pkg-config file (procxy.pc). Both are relocatable: they name the installed files relative to
# their own location and hold no path of the build machine, so a moved or copied prefix works.
# What an installed static library needs beyond itself is found again on the consumer's machine:
# GCC's libbacktrace when it was built with backtraces (procxyConfig.cmake.in); libprocxy.so
# contains it. docs/design.md "Packaging".
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

get_target_property(_procxy_type procxy TYPE)
if(_procxy_type STREQUAL "STATIC_LIBRARY" AND PROCXY_HAS_LIBBACKTRACE)
  set(PROCXY_STATIC_NEEDS_LIBBACKTRACE ON)
else()
  set(PROCXY_STATIC_NEEDS_LIBBACKTRACE OFF)
endif()

install(TARGETS procxy procxy_host procxy_module EXPORT procxyTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(DIRECTORY include/procxy DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT procxyTargets NAMESPACE procxy:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/procxy)

configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/procxyConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/procxyConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/procxy)
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/procxyConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/procxyConfig.cmake
              ${CMAKE_CURRENT_BINARY_DIR}/procxyConfigVersion.cmake
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/procxy)

# procxy.pc: the prefix is ${pcfiledir} and as many ../ as lib/pkgconfig is deep.
if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}" OR IS_ABSOLUTE "${CMAKE_INSTALL_INCLUDEDIR}")
  message(WARNING "procxy: an absolute CMAKE_INSTALL_LIBDIR or CMAKE_INSTALL_INCLUDEDIR makes "
                  "procxy.pc name absolute paths (not relocatable)")
  set(PROCXY_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
else()
  file(RELATIVE_PATH _procxy_pc_up "/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/")
  string(REGEX REPLACE "/$" "" _procxy_pc_up "${_procxy_pc_up}")
  set(PROCXY_PC_PREFIX "\${pcfiledir}/${_procxy_pc_up}")
endif()
# Boost's headers (header-only use) are on the compiler's default path on Debian; elsewhere their
# directory is named, as the dependency's location on this machine.
set(PROCXY_PC_CFLAGS "")
get_target_property(_procxy_boost_inc Boost::headers INTERFACE_INCLUDE_DIRECTORIES)
foreach(_dir IN LISTS _procxy_boost_inc)
  if(_dir AND NOT _dir IN_LIST CMAKE_CXX_IMPLICIT_INCLUDE_DIRECTORIES)
    string(APPEND PROCXY_PC_CFLAGS " -I${_dir}")
  endif()
endforeach()
# A static libprocxy.a with backtraces needs libbacktrace and libdl after it: -lbacktrace, which
# the GCC (and clang) driver finds in GCC's own library directory.
# A static one needs libseccomp (the sandbox) in any case.
set(PROCXY_PC_LIBS "")
if(_procxy_type STREQUAL "STATIC_LIBRARY")
  set(PROCXY_PC_LIBS " -lseccomp")
endif()
if(PROCXY_STATIC_NEEDS_LIBBACKTRACE)
  string(APPEND PROCXY_PC_LIBS " -lbacktrace")
  foreach(_lib IN LISTS CMAKE_DL_LIBS)
    string(APPEND PROCXY_PC_LIBS " -l${_lib}")
  endforeach()
endif()
configure_file(${CMAKE_CURRENT_LIST_DIR}/procxy.pc.in ${CMAKE_CURRENT_BINARY_DIR}/procxy.pc @ONLY)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/procxy.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
