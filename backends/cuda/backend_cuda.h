/* backend_cuda.h: what the CUDA backend tells its tests beyond lib/compute/backend.h (internal). */
#ifndef R1_BACKEND_CUDA_H
#define R1_BACKEND_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"

/* 1 when the device's prompt-sized products have gone to cuBLAS, else 0 with the reason in why
 * (not tried yet: no product of 9 or more tokens so far; R1_CUDA_CUBLAS=0; dlopen's message). */
int32_t r1_backend_cuda__uses_cublas(r1_dev *dev, char *why, size_t why_len);

#endif
