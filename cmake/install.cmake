# cmake --install: headers, the library, and a CMake package so find_package(procxy CONFIG) works.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

install(TARGETS procxy EXPORT procxyTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
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
