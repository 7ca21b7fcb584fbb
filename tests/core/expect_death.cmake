# Runs PROGRAM with ARG and passes only if it dies (non-zero exit) with stderr matching
# EXPECT, e.g. "AddressSanitizer: use-after-poison". A program that exits 0, or fails with
# another message, fails the test.
execute_process(COMMAND ${PROGRAM} ${ARG} RESULT_VARIABLE status ERROR_VARIABLE err OUTPUT_QUIET)
if(status EQUAL 0)
  message(FATAL_ERROR "${PROGRAM} ${ARG} exited 0: the sanitizer did not catch it")
endif()
if(NOT err MATCHES "${EXPECT}")
  message(FATAL_ERROR "${PROGRAM} ${ARG} failed (${status}) without the expected report '${EXPECT}':\n${err}")
endif()
foreach(want IN LISTS ALSO)
  if(NOT err MATCHES "${want}")
    message(FATAL_ERROR "report lacks '${want}':\n${err}")
  endif()
endforeach()
message(STATUS "caught as expected: ${EXPECT}")
