/* backend_vulkan.h: what the Vulkan backend exposes besides its operations table (internal). */
#ifndef R1_BACKEND_VULKAN_H
#define R1_BACKEND_VULKAN_H

#include <stdint.h>

/* Error messages VK_LAYER_KHRONOS_validation reported since the process started; validation is
 * on for devices opened while R1_VULKAN_VALIDATION=1 and the layer is installed. */
uint64_t r1_backend_vulkan__validation_errors(void);
/* 1 once a device was opened with the validation layer and its messenger active. */
int32_t r1_backend_vulkan__validation_enabled(void);

#endif
