# The CUDA backend: built only when nvcc exists and the installed torch is a CUDA build.
# taco_cuda gets no torch include path, so a torch header under cuda/ fails to compile.
include(CheckLanguage)
check_language(CUDA)
if(NOT CMAKE_CUDA_COMPILER OR NOT TACO_TORCH_CUDA)
  message(STATUS "taco: CUDA backend off (nvcc: '${CMAKE_CUDA_COMPILER}', torch CUDA: '${TACO_TORCH_CUDA}')")
  return()
endif()
enable_language(CUDA)
find_package(CUDAToolkit REQUIRED)
if(NOT CMAKE_CUDA_ARCHITECTURES OR CMAKE_CUDA_ARCHITECTURES STREQUAL "52")
  set(CMAKE_CUDA_ARCHITECTURES 90a 80)
endif()
set(CMAKE_CUDA_STANDARD 20)

# CUTLASS / CuTe headers from the nvidia-cutlass wheel.
taco_python_query(_cutlass_root "import cutlass_library, os; print(os.path.dirname(cutlass_library.__file__))")
if(NOT _cutlass_root OR NOT EXISTS ${_cutlass_root}/source/include/cutlass/cutlass.h)
  message(FATAL_ERROR "CUDA build needs the nvidia-cutlass wheel (pip install nvidia-cutlass)")
endif()
set(TACO_CUTLASS_INCLUDE ${_cutlass_root}/source/include ${_cutlass_root}/source/tools/util/include)

# NCCL from the nvidia-nccl-cu13 wheel.
taco_python_query(_nccl_root "import nvidia.nccl, os; print(list(nvidia.nccl.__path__)[0])")
find_path(TACO_NCCL_INCLUDE nccl.h HINTS ${_nccl_root}/include NO_DEFAULT_PATH)
find_library(TACO_NCCL_LIBRARY NAMES nccl libnccl.so.2 HINTS ${_nccl_root}/lib NO_DEFAULT_PATH)

# cuBLAS, the GEMM benchmark's peer: the toolkit's when it has one, else the nvidia-cublas wheel
# that the CUDA torch build depends on (nvidia/<cuXX>/ or nvidia/cublas/).
if(TARGET CUDA::cublas)
  set(TACO_CUBLAS_TARGET CUDA::cublas)
else()
  taco_python_query(_nvidia_roots "import nvidia; print(';'.join(list(nvidia.__path__)))")
  foreach(_root IN LISTS _nvidia_roots)
    file(GLOB _cublas_hints ${_root}/*/lib)
    find_library(TACO_CUBLAS_LIBRARY NAMES cublas libcublas.so.13 libcublas.so.12
                 HINTS ${_cublas_hints} NO_DEFAULT_PATH)
    file(GLOB _cublas_inc_hints ${_root}/*/include)
    find_path(TACO_CUBLAS_INCLUDE cublas_v2.h HINTS ${_cublas_inc_hints} NO_DEFAULT_PATH)
  endforeach()
  if(TACO_CUBLAS_LIBRARY AND TACO_CUBLAS_INCLUDE)
    add_library(taco_cublas INTERFACE)
    target_link_libraries(taco_cublas INTERFACE ${TACO_CUBLAS_LIBRARY})
    target_include_directories(taco_cublas INTERFACE ${TACO_CUBLAS_INCLUDE})
    set(TACO_CUBLAS_TARGET taco_cublas)
  endif()
endif()

file(GLOB TACO_CUDA_SRC CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/cuda/src/*.cu)
if(NOT TACO_CUDA_SRC)
  message(STATUS "taco: no CUDA sources yet")
  return()
endif()
add_library(taco_cuda STATIC ${TACO_CUDA_SRC})
target_include_directories(taco_cuda PUBLIC ${CMAKE_SOURCE_DIR}/cuda/include)
target_include_directories(taco_cuda PRIVATE ${TACO_CUTLASS_INCLUDE})
target_compile_options(taco_cuda PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:--expt-relaxed-constexpr
                       -DNDEBUG -O3 --use_fast_math>)
target_link_libraries(taco_cuda PUBLIC CUDA::cudart taco_kernels)
if(TACO_NCCL_INCLUDE AND TACO_NCCL_LIBRARY)
  target_include_directories(taco_cuda PRIVATE ${TACO_NCCL_INCLUDE})
  target_link_libraries(taco_cuda PUBLIC ${TACO_NCCL_LIBRARY})
endif()
set(TACO_HAVE_CUDA ON)
