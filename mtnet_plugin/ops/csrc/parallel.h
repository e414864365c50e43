/* The share of [begin, end) of the calling OpenMP thread: contiguous chunks, one per thread. Built with
 * -fopenmp and loaded after torch, the kernels use torch's own OpenMP runtime (the same libgomp.so.1), so they
 * share its thread pool instead of competing with it; without OpenMP the whole range is the caller's. */
#ifndef MTNET_PARALLEL_H
#define MTNET_PARALLEL_H
#include <stdint.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static inline void thread_chunk(int64_t begin, int64_t end, int64_t *b, int64_t *e) {
#ifdef _OPENMP
    const int64_t id = omp_get_thread_num(), n = omp_get_num_threads();
#else
    const int64_t id = 0, n = 1;
#endif
    *b = begin + (end - begin) * id / n;
    *e = begin + (end - begin) * (id + 1) / n;
}

/* Runs STATUS (an int expression over the int64_t `b`, `e` this declares: the calling thread's share of
 * [begin, end); nonzero means it failed) on `threads` OpenMP threads and ORs the failures into `failed`. The
 * caller's variables must be named `threads` and `failed` (the pragma names them). */
#define PARALLEL_CHUNKS(begin, end, status)                                                            \
    do {                                                                                               \
        (void)threads; /* unused without OpenMP */                                                     \
        _Pragma("omp parallel num_threads((int)threads) if (threads > 1) reduction(| : failed)")     \
        {                                                                                              \
            int64_t b, e;                                                                              \
            thread_chunk((begin), (end), &b, &e);                                                      \
            failed |= (status) != 0;                                                                   \
        }                                                                                              \
    } while (0)

#endif
