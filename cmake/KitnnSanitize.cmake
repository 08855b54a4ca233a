# KitnnSanitize.cmake — KITNN_SANITIZE=ON builds the project's own programs (tests,
# examples, benchmarks: everything linking kitnn_project_flags) with AddressSanitizer
# and UndefinedBehaviorSanitizer. Never imposed on users of kitnn::kitnn.
# Use with -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-O1 -g" (scripts/test.sh --sanitize).
function(kitnn_enable_sanitizers target)
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
    message(FATAL_ERROR "KITNN_SANITIZE needs GCC or Clang (have ${CMAKE_CXX_COMPILER_ID})")
  endif()
  # Without UBSan's vptr check (dynamic type of polymorphic objects at member calls and
  # downcasts): it alone costs about a quarter of the sanitizer build's compile time
  # (clang 14, tests/test_model.cpp: 62 s of CPU with it, 45 s without, measured
  # 2026-12-01), every other UBSan check and ASan stay on.
  set(flags -fsanitize=address,undefined -fno-sanitize=vptr -fno-omit-frame-pointer)
  target_compile_options(${target} INTERFACE ${flags})
  target_link_options(${target} INTERFACE ${flags})
endfunction()
