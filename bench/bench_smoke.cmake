# bench_smoke.cmake: CTest smoke test of labhost-bench (cmake -DBENCH=PATH -P bench_smoke.cmake).
# Runs `labhost-bench --quick --json` and checks that it exited 0 and printed one JSON object
# holding every documented key (docs/performance.md) with a measured value. Speed is never
# checked here: CI machines vary, and figures belong to docs/performance.md.
if(NOT BENCH)
  message(FATAL_ERROR "bench_smoke.cmake needs -DBENCH=path/to/labhost-bench")
endif()

execute_process(COMMAND "${BENCH}" --quick --json
                RESULT_VARIABLE status
                OUTPUT_VARIABLE output
                ERROR_VARIABLE errors
                TIMEOUT 110)
if(NOT status EQUAL 0)
  message(FATAL_ERROR "labhost-bench --quick --json failed (${status}):\n${errors}\n${output}")
endif()

set(keys
  seq_rtt_us seq_rtt_p99_us seq_rtt_floor_us seq_rtt_floor_p99_us seq_rtt_ratio seq_ping_us
  seq_rtt_floor_one_cpu_us
  par_clients par_calls_s par_floor_calls_s par_ratio
  bulk_bytes bulk_MBps bulk_floor_MBps bulk_ratio bulk_driver_ms
  connect_us connect_floor_us connect_ratio
  idle_conns idle_threads idle_rss_MiB idle_base_threads idle_base_rss_MiB idle_rtt_us idle_open_ms
  startup_ms startup_services
  call_frame_bytes result_frame_bytes pool_size busy_poll_us lease_s cpus load_before quick missed)
foreach(key IN LISTS keys)
  string(JSON type ERROR_VARIABLE problem TYPE "${output}" ${key})
  if(problem)
    message(FATAL_ERROR "labhost-bench --json: key \"${key}\": ${problem}\noutput:\n${output}")
  endif()
  if(type STREQUAL "NULL")
    message(FATAL_ERROR "labhost-bench --json: key \"${key}\" is null (not measured)\noutput:\n${output}")
  endif()
endforeach()
message(STATUS "labhost-bench --quick --json: every key present\n${output}")
