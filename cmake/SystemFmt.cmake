# LibTorch's include directory carries its own (newer) fmt, which the distribution's spdlog
# cannot compile against. bittorch_use_system_fmt(target SCOPE) puts the distribution's fmt, the
# one spdlog was built with, first on the include path of `target`'s sources (SCOPE: PRIVATE
# or PUBLIC).
function(bittorch_use_system_fmt target scope)
  get_target_property(_fmt_include_dirs fmt::fmt INTERFACE_INCLUDE_DIRECTORIES)
  find_path(SYSTEM_FMT_INCLUDE_DIR fmt/format.h PATHS ${_fmt_include_dirs} NO_DEFAULT_PATH REQUIRED)
  set(_fmt_only_dir ${PROJECT_BINARY_DIR}/system-fmt)
  if(NOT EXISTS ${_fmt_only_dir}/fmt)
    file(MAKE_DIRECTORY ${_fmt_only_dir})
    file(CREATE_LINK ${SYSTEM_FMT_INCLUDE_DIR}/fmt ${_fmt_only_dir}/fmt SYMBOLIC)
  endif()
  target_include_directories(${target} SYSTEM BEFORE ${scope} $<BUILD_INTERFACE:${_fmt_only_dir}>)
endfunction()
