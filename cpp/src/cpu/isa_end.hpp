// Closes the instruction-set section opened by isa_begin.hpp.
#if defined(THERMOSSL_ISA_AVX2) || defined(THERMOSSL_ISA_AVX512)
#if defined(__clang__)
#pragma clang attribute pop
#elif defined(__GNUC__)
#pragma GCC pop_options
#endif
#endif
#undef THERMOSSL_MADD
#undef THERMOSSL_HAS_FMA
