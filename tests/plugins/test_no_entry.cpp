// test_no_entry: a valid shared library that is not a labhost driver (no entry symbol).
extern "C" __attribute__((visibility("default"))) int some_other_function() { return 7; }
