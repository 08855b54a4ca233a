# Turns examples/serve/index.html into a C++ header holding it as one raw string
# literal, kitnn_serve_page, so that kitnn_serve carries its page inside the binary
# (nothing is read from disk at run time). Run by examples/CMakeLists.txt at build time:
#   cmake -DIN=index.html -DOUT=serve_page.hpp -P embed.cmake
file(READ "${IN}" page)
set(delim "kitnn_page")
string(FIND "${page}" ")${delim}\"" clash)
if(NOT clash EQUAL -1)
  message(FATAL_ERROR "${IN} contains the raw-string delimiter )${delim}\"")
endif()
file(WRITE "${OUT}.tmp"
  "// Generated from examples/serve/index.html by examples/serve/embed.cmake: do not edit.\n"
  "#pragma once\n"
  "static const char kitnn_serve_page[] = R\"${delim}(${page})${delim}\";\n")
# Replace only when changed, so an unchanged page does not recompile kitnn_serve.
execute_process(COMMAND "${CMAKE_COMMAND}" -E copy_if_different "${OUT}.tmp" "${OUT}")
file(REMOVE "${OUT}.tmp")
