/* tests/cuda/cuda_test.h — what the CUDA tests share: the runtime-call check and the skip when no
 * device is visible. */
#ifndef TG_TEST_CUDA_TEST_H
#define TG_TEST_CUDA_TEST_H

#include <cuda_runtime_api.h>
#include <stdio.h>
#include <stdlib.h>

/* A CUDA runtime call in a test: on failure, says where and what, and exits 1. */
#define CU(call)                                                                               \
    do {                                                                                       \
        cudaError_t e_ = (call);                                                               \
        if (e_ != cudaSuccess) {                                                               \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
            exit(1);                                                                           \
        }                                                                                      \
    } while (0)

/* Returns when a CUDA device is visible; otherwise prints "SKIP: no CUDA device (why)" and
 * exits 77, which ctest reports as skipped (SKIP_RETURN_CODE). */
static void cuda_test_require_device(void) {
    int n_dev = 0;
    const cudaError_t ce = cudaGetDeviceCount(&n_dev);
    if (ce != cudaSuccess || n_dev == 0) {
        printf("SKIP: no CUDA device (%s)\n", ce != cudaSuccess ? cudaGetErrorString(ce) : "0 devices");
        exit(77);
    }
}

#endif
