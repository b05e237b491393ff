# bench/codec.cmake — defines `procxy_codec_bench`: procxy's value codec vs cereal vs Cap'n Proto
# (encode+decode round trips of three payloads). Included by bench/CMakeLists.txt.
#
# Needs (Debian 12): libbenchmark-dev, libboost1.81-dev, libcereal-dev, libcapnp-dev and
# capnproto (the `capnp` / `capnpc-c++` schema compiler). Uses only procxy's headers; it does
# not link the procxy library.
#
# Run:  <build>/bench/procxy_codec_bench --benchmark_min_time=0.2 --benchmark_repetitions=5 \
#           --benchmark_enable_random_interleaving=true --benchmark_report_aggregates_only=true
#       <build>/bench/procxy_codec_bench --safety     (malformed-input probes, no timing)

find_package(benchmark REQUIRED)
find_package(Boost 1.81 REQUIRED CONFIG)
find_package(cereal REQUIRED)
# CapnProtoConfig.cmake probes libatomic with check_library_exists(), which only works with C
# enabled (its C++ probe collides with the __atomic_load_8 builtin and fails).
enable_language(C)
find_package(CapnProto REQUIRED)

block()
  set(CAPNPC_SRC_PREFIX "${CMAKE_CURRENT_LIST_DIR}")
  set(CAPNPC_OUTPUT_DIR "${CMAKE_CURRENT_BINARY_DIR}/procxy_codec_bench_capnp")
  file(MAKE_DIRECTORY "${CAPNPC_OUTPUT_DIR}")
  capnp_generate_cpp(procxy_codec_capnp_srcs procxy_codec_capnp_hdrs
                     "${CMAKE_CURRENT_LIST_DIR}/codec_bench.capnp")

  add_executable(procxy_codec_bench
    "${CMAKE_CURRENT_LIST_DIR}/codec_bench.cpp"
    ${procxy_codec_capnp_srcs})
  set_target_properties(procxy_codec_bench PROPERTIES
    CXX_STANDARD 20 CXX_STANDARD_REQUIRED ON CXX_EXTENSIONS OFF)
  # Generated capnp code is a system include so its warnings are not ours.
  target_include_directories(procxy_codec_bench SYSTEM PRIVATE "${CAPNPC_OUTPUT_DIR}")
  target_include_directories(procxy_codec_bench PRIVATE "${CMAKE_CURRENT_LIST_DIR}/../include")
  target_link_libraries(procxy_codec_bench PRIVATE
    benchmark::benchmark Boost::headers cereal::cereal CapnProto::capnp)
  # -O2 whatever the build type (a later -O wins over CMAKE_CXX_FLAGS_<CONFIG>).
  target_compile_options(procxy_codec_bench PRIVATE -O2)
  if(TARGET procxy_warnings)
    # Warnings only on our own source, not on the generated .c++.
    set_source_files_properties("${CMAKE_CURRENT_LIST_DIR}/codec_bench.cpp" PROPERTIES
      COMPILE_OPTIONS "$<TARGET_PROPERTY:procxy_warnings,INTERFACE_COMPILE_OPTIONS>")
  endif()
endblock()
