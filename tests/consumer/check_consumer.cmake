# Installs the BitTorch build into a fresh prefix, then configures, builds and runs the
# consumer project against it. Run by CTest with cmake -P.
file(REMOVE_RECURSE "${WORK_DIR}")
set(prefix "${WORK_DIR}/prefix")

function(run_step)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE result)
  if(NOT result EQUAL 0)
    message(FATAL_ERROR "step failed (${result}): ${ARGN}")
  endif()
endfunction()

run_step(${CMAKE_COMMAND} --install "${BITTORCH_BUILD_DIR}" --prefix "${prefix}")
run_step("${PYTHON}" "${CONSUMER_SOURCE_DIR}/readme_snippet.py" "${README}" "${WORK_DIR}/readme_example.cpp")
run_step(${CMAKE_COMMAND} -S "${CONSUMER_SOURCE_DIR}" -B "${WORK_DIR}/build" -G "${GENERATOR}"
         -DCMAKE_BUILD_TYPE=Release "-DCMAKE_PREFIX_PATH=${prefix}" "-DTorch_DIR=${TORCH_DIR}"
         "-DREADME_SNIPPET=${WORK_DIR}/readme_example.cpp")
run_step(${CMAKE_COMMAND} --build "${WORK_DIR}/build")
run_step("${WORK_DIR}/build/consumer")
