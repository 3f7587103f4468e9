# Every BitTorch binary must use the one shared C++ runtime (libstdc++.so.6) that LibTorch
# uses. A GCC whose own library directories hold libstdc++.a but no libstdc++.so (seen: the
# GCC 13 in /opt/gcc of the GPU machine's Ubuntu 24.04 image) makes `-lstdc++` pick the
# archive: every library and program it links then carries a private copy of the C++
# runtime, exception machinery included (__cxa_throw, __cxa_begin_catch, ...). An exception
# thrown through one copy and caught through the other (a c10::Error raised in LibTorch and
# caught in BitTorch, or raised in BitTorch and caught by Python) crashes the process.
#
# bittorch_link_shared_cxx_runtime() looks where the linker would find libstdc++ (the
# compiler's library directories, in the linker's order: a shared library before an archive
# in each directory) and, when that is an archive, links the system's libstdc++.so.6 into
# every target of this directory and below, ahead of the compiler's own -lstdc++, so that
# nothing is taken from the archive.
macro(bittorch_link_shared_cxx_runtime)
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    execute_process(COMMAND ${CMAKE_CXX_COMPILER} -print-search-dirs
                    OUTPUT_VARIABLE _bittorch_search_dirs ERROR_QUIET)
    string(REGEX MATCH "libraries: =([^\n]*)" _bittorch_match "${_bittorch_search_dirs}")
    string(REPLACE ":" ";" _bittorch_library_dirs "${CMAKE_MATCH_1}")
    set(_bittorch_static_runtime "")
    foreach(_bittorch_dir IN LISTS _bittorch_library_dirs)
      if(EXISTS "${_bittorch_dir}/libstdc++.so")
        break()
      elseif(EXISTS "${_bittorch_dir}/libstdc++.a")
        set(_bittorch_static_runtime "${_bittorch_dir}/libstdc++.a")
        break()
      endif()
    endforeach()
    if(_bittorch_static_runtime)
      find_library(BITTORCH_SHARED_LIBSTDCXX NAMES libstdc++.so.6
                   DOC "The shared C++ runtime BitTorch links instead of the compiler's static one")
      if(NOT BITTORCH_SHARED_LIBSTDCXX)
        message(FATAL_ERROR "BitTorch: ${CMAKE_CXX_COMPILER} would link the static ${_bittorch_static_runtime}, "
                            "and no shared libstdc++.so.6 was found to link instead; set BITTORCH_SHARED_LIBSTDCXX")
      endif()
      message(STATUS "BitTorch: ${CMAKE_CXX_COMPILER} has only a static libstdc++ "
                     "(${_bittorch_static_runtime}); linking ${BITTORCH_SHARED_LIBSTDCXX} instead")
      link_libraries("${BITTORCH_SHARED_LIBSTDCXX}")
    endif()
  endif()
endmacro()
