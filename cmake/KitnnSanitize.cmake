# KitnnSanitize.cmake — KITNN_SANITIZE=ON builds the project's own programs (tests,
# examples, benchmarks: everything linking kitnn_project_flags) with AddressSanitizer
# and UndefinedBehaviorSanitizer. Never imposed on users of kitnn::kitnn.
# Use with -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-O1 -g" (scripts/test.sh --sanitize).
function(kitnn_enable_sanitizers target)
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
    message(FATAL_ERROR "KITNN_SANITIZE needs GCC or Clang (have ${CMAKE_CXX_COMPILER_ID})")
  endif()
  set(flags -fsanitize=address,undefined -fno-omit-frame-pointer)
  target_compile_options(${target} INTERFACE ${flags})
  target_link_options(${target} INTERFACE ${flags})
endfunction()
