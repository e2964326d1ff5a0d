/* cpu_features.h: run-time detection of the x86 vector extensions the kernels can use. */
#ifndef R1_CPU_FEATURES_H
#define R1_CPU_FEATURES_H

#include <stdint.h>

/* Kernel levels, lowest to highest; a level implies the ones below it. */
enum r1_cpu_level {
    R1_CPU_SCALAR = 0,
    R1_CPU_AVX2 = 1,   /* AVX2 + FMA + F16C */
    R1_CPU_AVX512 = 2, /* AVX-512 F, BW, VL, DQ (plus everything in AVX2) */
};

/* The best level this CPU and OS support (XSAVE state enabled), detected once. */
int32_t r1_cpu__detected_level(void);
/* The level kernels use: the detected one, lowered by R1_CPU_LEVEL=scalar|avx2|avx512 in the
 * environment or by r1_cpu__force_level() (tests), never raised above what the CPU has. */
int32_t r1_cpu__active_level(void);
/* -1 restores the detected level. Returns the level now active. */
int32_t r1_cpu__force_level(int32_t level);
const char *r1_cpu__level_name(int32_t level);
/* 1 when the AVX-512 level is usable and the CPU has AVX512-VNNI (vpdpbusd): the AVX-512
 * level's integer kernels then use it, with the same results. */
int32_t r1_cpu__has_avx512vnni(void);

#endif
