# Finds the pieces that come from Python wheels (torch, pybind11, nvidia-cutlass, nvidia-nccl-cu13)
# by asking the interpreter that builds us. No source tree is vendored.

if(NOT TACO_PYTHON)
  if(DEFINED Python_EXECUTABLE)
    set(TACO_PYTHON ${Python_EXECUTABLE})
  else()
    find_program(TACO_PYTHON NAMES python3 python REQUIRED)
  endif()
endif()

function(taco_python_query out code)
  execute_process(COMMAND ${TACO_PYTHON} -c "${code}" OUTPUT_VARIABLE value
                  RESULT_VARIABLE rc OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  if(rc EQUAL 0)
    set(${out} "${value}" PARENT_SCOPE)
  else()
    set(${out} "" PARENT_SCOPE)
  endif()
endfunction()

taco_python_query(_torch_prefix "import torch.utils; print(torch.utils.cmake_prefix_path)")
if(NOT _torch_prefix)
  message(FATAL_ERROR "torch is not importable by ${TACO_PYTHON}; install torch==2.13.0 first")
endif()
list(APPEND CMAKE_PREFIX_PATH ${_torch_prefix})
taco_python_query(TACO_TORCH_LIB_DIR "import torch, os; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))")
taco_python_query(TACO_TORCH_CUDA "import torch; print(torch.version.cuda or '')")

taco_python_query(_pybind11_dir "import pybind11; print(pybind11.get_cmake_dir())")
if(_pybind11_dir)
  list(APPEND CMAKE_PREFIX_PATH ${_pybind11_dir})
endif()
