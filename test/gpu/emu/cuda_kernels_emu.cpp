// cuda_kernels_emu.cpp: backends/cuda/cuda_kernels.cu compiled for the CPU (cuda_emu.h).
#include "cuda_emu.h"

#include "../../../backends/cuda/cuda_kernels.cu"
