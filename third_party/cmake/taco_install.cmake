# `cmake --install <build> --component cpp --prefix P` installs libtaco.so, taco.h and a CMake
# package config, so an out-of-tree project can `find_package(taco)` and link `taco::taco`.
include(CMakePackageConfigHelpers)
install(TARGETS taco ${TACO_CPU_LEVEL_LIBS} EXPORT tacoTargets LIBRARY DESTINATION lib
        COMPONENT cpp)
install(FILES ${PROJECT_SOURCE_DIR}/cpp/include/taco/taco.h DESTINATION include/taco COMPONENT cpp)
install(EXPORT tacoTargets NAMESPACE taco:: DESTINATION lib/cmake/taco COMPONENT cpp)
file(WRITE ${CMAKE_CURRENT_BINARY_DIR}/tacoConfig.cmake
     "include(\${CMAKE_CURRENT_LIST_DIR}/tacoTargets.cmake)\n")
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/tacoConfigVersion.cmake
                                 VERSION 0.1.0 COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/tacoConfig.cmake
              ${CMAKE_CURRENT_BINARY_DIR}/tacoConfigVersion.cmake
        DESTINATION lib/cmake/taco COMPONENT cpp)
