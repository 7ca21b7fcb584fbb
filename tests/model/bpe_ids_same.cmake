# The ids the original tokenizers give now (GOT, written by tests/scripts/bpe_reference.sh)
# must equal the committed ones (WANT = tests/model/bpe): the reference has not moved.
foreach(name gpt2 llama3 qwen2)
  foreach(kind ids special.ids)
    execute_process(COMMAND ${CMAKE_COMMAND} -E compare_files
                    ${GOT}/${name}.${kind} ${WANT}/${name}.${kind} RESULT_VARIABLE differ)
    if(differ)
      message(FATAL_ERROR "${name}.${kind}: the original tokenizer's ids differ from the committed ${WANT}/${name}.${kind}")
    endif()
  endforeach()
endforeach()
message(STATUS "the original tokenizers' ids equal the committed ones (3 x 2 files)")
