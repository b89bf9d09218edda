# labhost_add_driver(NAME SOURCES... [OUTPUT_DIR dir])
# Builds a driver plugin: a MODULE library named NAME.so that links only the SDK headers,
# placed in OUTPUT_DIR, else LABHOST_PLUGIN_DIR (the source tree's plugins/ in this build),
# else the current build folder (a vendor's out-of-tree build). Used by drivers/ and tests/,
# and installed for vendors with the labhost CMake package.
function(labhost_add_driver name)
  cmake_parse_arguments(ARG "" "OUTPUT_DIR" "" ${ARGN})
  if(NOT ARG_OUTPUT_DIR)
    if(LABHOST_PLUGIN_DIR)
      set(ARG_OUTPUT_DIR ${LABHOST_PLUGIN_DIR})
    else()
      set(ARG_OUTPUT_DIR ${CMAKE_CURRENT_BINARY_DIR})  # out of tree: the build folder
    endif()
  endif()
  add_library(${name} MODULE ${ARG_UNPARSED_ARGUMENTS})
  target_link_libraries(${name} PRIVATE labhost::sdk)
  if(TARGET labhost_warnings)
    target_link_libraries(${name} PRIVATE labhost_warnings)
  endif()
  set_target_properties(${name} PROPERTIES
    PREFIX ""
    LIBRARY_OUTPUT_DIRECTORY ${ARG_OUTPUT_DIR}
    CXX_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON)
endfunction()
