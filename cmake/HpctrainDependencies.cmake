# Finds hpctrain's dependencies and fails the configure with a clear message when one is unusable.

find_package(MPI REQUIRED COMPONENTS C)

# HDF5 must be the parallel (MPI-IO) build: checkpoints are written collectively by all ranks.
set(HDF5_PREFER_PARALLEL TRUE)
find_package(HDF5 REQUIRED COMPONENTS C)
if(NOT HDF5_IS_PARALLEL)
  message(FATAL_ERROR
    "hpctrain needs the parallel (MPI) build of HDF5, but the HDF5 found is serial "
    "(HDF5_C_INCLUDE_DIRS=${HDF5_C_INCLUDE_DIRS}). On Debian: apt-get install libhdf5-openmpi-dev "
    "(tools/install-deps.sh), or point HDF5_ROOT at a parallel HDF5.")
endif()
if(NOT TARGET hdf5::hdf5)
  add_library(hdf5::hdf5 INTERFACE IMPORTED)
  target_include_directories(hdf5::hdf5 INTERFACE ${HDF5_C_INCLUDE_DIRS})
  target_link_libraries(hdf5::hdf5 INTERFACE ${HDF5_C_LIBRARIES})
  target_compile_definitions(hdf5::hdf5 INTERFACE ${HDF5_C_DEFINITIONS})
endif()

set(Boost_NO_WARN_NEW_VERSIONS ON)
find_package(Boost 1.71 REQUIRED COMPONENTS log log_setup program_options)

# nlohmann/json (Debian nlohmann-json3-dev): the JSON of state, metrics and checkpoint files. It
# replaced a parser and writer of our own that mis-decoded \u escapes and clamped big integers.
find_package(nlohmann_json 3.10 REQUIRED)

find_package(Torch REQUIRED)
message(STATUS "hpctrain: libtorch ${Torch_VERSION} at ${TORCH_INSTALL_PREFIX}")

find_package(Threads REQUIRED)
find_package(ZLIB REQUIRED)

# Intel ISA-L (Debian libisal-dev): the CRC-32 of every checkpoint byte at about 20 GB/s (PCLMUL on
# x86, PMULL on Arm) where zlib's runs at 1-4 GB/s; the same checksum, so files stay checkable with
# zlib or Python's zlib.crc32. Optional: without it zlib computes the checksums.
find_path(ISAL_INCLUDE_DIR isa-l/crc.h)
find_library(ISAL_LIBRARY isal)
if(ISAL_INCLUDE_DIR AND ISAL_LIBRARY)
  set(HPCTRAIN_HAVE_ISAL ON)
  add_library(hpctrain_isal INTERFACE IMPORTED)
  target_include_directories(hpctrain_isal INTERFACE ${ISAL_INCLUDE_DIR})
  target_link_libraries(hpctrain_isal INTERFACE ${ISAL_LIBRARY})
  message(STATUS "hpctrain: checkpoint checksums with ISA-L (${ISAL_LIBRARY})")
else()
  set(HPCTRAIN_HAVE_ISAL OFF)
  message(STATUS "hpctrain: checkpoint checksums with zlib (ISA-L not found: apt-get install libisal-dev for faster ones)")
endif()

# CUDA and NCCL: optional. Only host code talks to them (cuda_runtime.h, nccl.h), so no CUDA
# compiler is needed.
set(HPCTRAIN_HAVE_NCCL OFF)
if(NOT HPCTRAIN_WITH_NCCL STREQUAL "OFF")
  find_package(CUDAToolkit QUIET)
  find_path(NCCL_INCLUDE_DIR nccl.h HINTS ${CUDAToolkit_INCLUDE_DIRS} $ENV{NCCL_HOME}/include ENV NCCL_INCLUDE_DIR)
  find_library(NCCL_LIBRARY nccl HINTS ${CUDAToolkit_LIBRARY_DIR} $ENV{NCCL_HOME}/lib ENV NCCL_LIB_DIR)
  if(CUDAToolkit_FOUND AND NCCL_INCLUDE_DIR AND NCCL_LIBRARY)
    set(HPCTRAIN_HAVE_NCCL ON)
    add_library(hpctrain_nccl INTERFACE IMPORTED)
    target_include_directories(hpctrain_nccl INTERFACE ${NCCL_INCLUDE_DIR})
    target_link_libraries(hpctrain_nccl INTERFACE ${NCCL_LIBRARY} CUDA::cudart)
    message(STATUS "hpctrain: NCCL backend ON (CUDA ${CUDAToolkit_VERSION}, ${NCCL_LIBRARY})")
  elseif(HPCTRAIN_WITH_NCCL STREQUAL "ON")
    message(FATAL_ERROR
      "HPCTRAIN_WITH_NCCL=ON but CUDA (found: ${CUDAToolkit_FOUND}) or NCCL (nccl.h: ${NCCL_INCLUDE_DIR}, "
      "libnccl: ${NCCL_LIBRARY}) is missing. Set CUDAToolkit_ROOT / NCCL_HOME, or use HPCTRAIN_WITH_NCCL=AUTO|OFF.")
  else()
    message(STATUS "hpctrain: NCCL backend OFF (CUDA or NCCL not found)")
  endif()
endif()
