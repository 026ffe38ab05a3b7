#pragma once

// RONDO_SIMD_CLONES marks a hot loop to be compiled three times, for the
// x86-64 baseline (SSE2), for AVX2 and for AVX-512F, with the variant
// picked once at load time from the CPU's features (GCC's function
// multiversioning, an ifunc). The variants compute the same bits: every
// element's operations and their rounding are the same; only how many
// elements a vector instruction holds differs (the fold's file builds with
// -ffp-contract=off, so no variant turns a multiply and an add into an
// FMA). Elsewhere it is empty.

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#  define RONDO_SIMD_CLONES                                                    \
    __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#  define RONDO_SIMD_CLONES
#endif
