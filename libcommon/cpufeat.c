/* cpufeat.c - see cpufeat.h. */
#include "cpufeat.h"

#include <stdlib.h>
#include <string.h>

int sft_cpu_avx512(void)
{
#if defined(__x86_64__) && defined(__GNUC__)
	static int have = -1;
	if (have < 0) {
		const char *e = getenv("SFT_NO_AVX512");
		have = !(e && *e && strcmp(e, "0") != 0) && __builtin_cpu_supports("avx512f") &&
		       __builtin_cpu_supports("fma");
	}
	return have;
#else
	return 0;
#endif
}
