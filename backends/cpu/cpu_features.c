/* cpu_features.c: CPUID/XGETBV feature detection, so no kernel assumes the build machine's CPU. */
#include "cpu_features.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

static uint64_t r1_xgetbv0(void)
{
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static int32_t r1_detect_vnni(void)
{
    unsigned a, b, c, d;
    if (__get_cpuid_max(0, NULL) < 7)
        return 0;
    __cpuid_count(7, 0, a, b, c, d);
    return (c >> 11) & 1; /* AVX512_VNNI; only consulted once the AVX-512 level is usable */
}

static int32_t r1_detect(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return R1_CPU_SCALAR;
    int fma = (c >> 12) & 1, osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, f16c = (c >> 29) & 1;
    if (!osxsave || !avx)
        return R1_CPU_SCALAR;
    uint64_t xcr0 = r1_xgetbv0();
    if ((xcr0 & 0x6) != 0x6) /* the OS saves SSE and AVX state */
        return R1_CPU_SCALAR;
    if (__get_cpuid_max(0, NULL) < 7)
        return R1_CPU_SCALAR;
    __cpuid_count(7, 0, a, b, c, d);
    int avx2 = (b >> 5) & 1;
    int avx512f = (b >> 16) & 1, avx512dq = (b >> 17) & 1, avx512bw = (b >> 30) & 1,
        avx512vl = (b >> 31) & 1;
    if (!(avx2 && fma && f16c))
        return R1_CPU_SCALAR;
    /* opmask, upper ZMM and ZMM16-31 state must be enabled by the OS too */
    if (avx512f && avx512dq && avx512bw && avx512vl && (xcr0 & 0xe0) == 0xe0)
        return R1_CPU_AVX512;
    return R1_CPU_AVX2;
}
#else
static int32_t r1_detect(void)
{
    return R1_CPU_SCALAR;
}
static int32_t r1_detect_vnni(void)
{
    return 0;
}
#endif

static pthread_once_t r1_cpu_once = PTHREAD_ONCE_INIT;
static int32_t r1_cpu_detected;
static int32_t r1_cpu_vnni;
static int32_t r1_cpu_env_cap = R1_CPU_AVX512;
/* Written by tests between runs only; read by the kernels' dispatch. */
static _Atomic int32_t r1_cpu_forced = -1;

static void r1_cpu_init(void)
{
    r1_cpu_detected = r1_detect();
    r1_cpu_vnni = r1_cpu_detected >= R1_CPU_AVX512 && r1_detect_vnni();
    const char *env = getenv("R1_CPU_LEVEL");
    if (env != NULL) {
        if (strcmp(env, "scalar") == 0)
            r1_cpu_env_cap = R1_CPU_SCALAR;
        else if (strcmp(env, "avx2") == 0)
            r1_cpu_env_cap = R1_CPU_AVX2;
    }
}

int32_t r1_cpu__detected_level(void)
{
    pthread_once(&r1_cpu_once, r1_cpu_init);
    return r1_cpu_detected;
}

int32_t r1_cpu__active_level(void)
{
    pthread_once(&r1_cpu_once, r1_cpu_init);
    int32_t level = r1_cpu_detected < r1_cpu_env_cap ? r1_cpu_detected : r1_cpu_env_cap;
    int32_t forced = r1_cpu_forced;
    if (forced >= 0 && forced < level)
        level = forced;
    return level;
}

int32_t r1_cpu__force_level(int32_t level)
{
    r1_cpu_forced = level;
    return r1_cpu__active_level();
}

int32_t r1_cpu__has_avx512vnni(void)
{
    pthread_once(&r1_cpu_once, r1_cpu_init);
    return r1_cpu_vnni;
}

const char *r1_cpu__level_name(int32_t level)
{
    switch (level) {
    case R1_CPU_AVX512: return "avx512";
    case R1_CPU_AVX2: return "avx2";
    default: return "scalar";
    }
}
