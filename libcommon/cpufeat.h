/* cpufeat.h - the one run-time check the CPU kernels (ops_cpu.c, ops_attn.c, train_simd.c)
 * make before taking an AVX-512 path. No state owned; thread-safe (a benign cached int). */
#ifndef SFT_CPUFEAT_H
#define SFT_CPUFEAT_H

/* 1 when the CPU has AVX-512F and FMA and the environment does not set SFT_NO_AVX512 to
 * something other than "0" (the tests run the portable paths with it, as on CPUs without
 * AVX-512); 0 otherwise, and always 0 where the build has no x86-64 GCC/Clang. */
int sft_cpu_avx512(void);

#endif
