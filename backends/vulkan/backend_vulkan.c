/* backend_vulkan.c: the Vulkan backend: instance and device selection, device buffers with a
 * memory budget, staged transfers, command recording with a timeline semaphore (fences where
 * the device lacks one), and the shaders of a layer: quantised matrix products, decode
 * and prefill attention, RMSNorm, rotary, softmax, SwiGLU, routing and MoE combine. */
#define VK_NO_PROTOTYPES
#include <vulkan/vulkan.h>

#include <ctype.h>
#include <dlfcn.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "backend_vulkan.h"
#include "dtype.h"
#include "error.h"
#include "r1_vk_shaders.h"

/* The loader is opened with dlopen rather than linked, so libr1 loads on machines without
 * Vulkan and r1_backend_available("vulkan") can say why it is missing. */

static struct {
    pthread_once_t once;
    void *lib;
    char why[200];
    PFN_vkGetInstanceProcAddr get_instance_proc;
    PFN_vkCreateInstance create_instance;
    PFN_vkEnumerateInstanceVersion enumerate_instance_version;
    PFN_vkEnumerateInstanceLayerProperties enumerate_layers;
    PFN_vkEnumerateInstanceExtensionProperties enumerate_extensions;
} r1_vk = {.once = PTHREAD_ONCE_INIT};

/* Validation-layer messages of severity error, counted process-wide (tests assert zero). */
static atomic_uint_fast64_t r1_vk_validation_errors;
static atomic_int r1_vk_validation_enabled;

/* Instance-level functions this file calls. */
typedef struct r1_vk_instance_fns {
    PFN_vkDestroyInstance destroy_instance;
    PFN_vkEnumeratePhysicalDevices enumerate_physical_devices;
    PFN_vkGetPhysicalDeviceProperties get_properties;
    PFN_vkGetPhysicalDeviceProperties2 get_properties2;
    PFN_vkGetPhysicalDeviceFeatures2 get_features2;
    PFN_vkGetPhysicalDeviceMemoryProperties get_memory_properties;
    PFN_vkGetPhysicalDeviceQueueFamilyProperties get_queue_families;
    PFN_vkCreateDevice create_device;
    PFN_vkGetDeviceProcAddr get_device_proc;
    PFN_vkCreateDebugUtilsMessengerEXT create_messenger;
    PFN_vkDestroyDebugUtilsMessengerEXT destroy_messenger;
} r1_vk_instance_fns;

/* Device-level functions, fetched once per device through vkGetDeviceProcAddr. */
#define R1_VK_DEVICE_FNS(X)                                                                        \
    X(vkDestroyDevice)                                                                             \
    X(vkDeviceWaitIdle)                                                                            \
    X(vkGetDeviceQueue)                                                                            \
    X(vkCreateBuffer)                                                                              \
    X(vkDestroyBuffer)                                                                             \
    X(vkGetBufferMemoryRequirements)                                                               \
    X(vkAllocateMemory)                                                                            \
    X(vkFreeMemory)                                                                                \
    X(vkBindBufferMemory)                                                                          \
    X(vkMapMemory)                                                                                 \
    X(vkCreateCommandPool)                                                                         \
    X(vkDestroyCommandPool)                                                                        \
    X(vkAllocateCommandBuffers)                                                                    \
    X(vkBeginCommandBuffer)                                                                        \
    X(vkEndCommandBuffer)                                                                          \
    X(vkCmdCopyBuffer)                                                                             \
    X(vkCmdPipelineBarrier)                                                                        \
    X(vkCmdBindPipeline)                                                                           \
    X(vkCmdBindDescriptorSets)                                                                     \
    X(vkCmdPushConstants)                                                                          \
    X(vkCmdDispatch)                                                                               \
    X(vkQueueSubmit)                                                                               \
    X(vkCreateFence)                                                                               \
    X(vkDestroyFence)                                                                              \
    X(vkWaitForFences)                                                                             \
    X(vkResetFences)                                                                               \
    X(vkGetFenceStatus)                                                                            \
    X(vkCreateSemaphore)                                                                           \
    X(vkDestroySemaphore)                                                                          \
    X(vkCreateShaderModule)                                                                        \
    X(vkDestroyShaderModule)                                                                       \
    X(vkCreateDescriptorSetLayout)                                                                 \
    X(vkDestroyDescriptorSetLayout)                                                                \
    X(vkCreatePipelineLayout)                                                                      \
    X(vkDestroyPipelineLayout)                                                                     \
    X(vkCreateComputePipelines)                                                                    \
    X(vkDestroyPipeline)                                                                           \
    X(vkCreateDescriptorPool)                                                                      \
    X(vkDestroyDescriptorPool)                                                                     \
    X(vkResetDescriptorPool)                                                                       \
    X(vkAllocateDescriptorSets)                                                                    \
    X(vkUpdateDescriptorSets)

typedef struct r1_vk_device_fns {
#define R1_VK_FIELD(name) PFN_##name name;
    R1_VK_DEVICE_FNS(R1_VK_FIELD)
#undef R1_VK_FIELD
    /* Vulkan 1.2 core; NULL when the device is older (fences then mark completion). */
    PFN_vkWaitSemaphores vkWaitSemaphores;
    PFN_vkGetSemaphoreCounterValue vkGetSemaphoreCounterValue;
} r1_vk_device_fns;

struct r1_buf {
    VkBuffer buffer;
    VkDeviceMemory memory;
    size_t bytes;   /* as asked for */
    size_t charged; /* the allocation's size, counted against the budget */
};

/* Host-visible memory that uploads are copied into and downloads are copied out of. */
typedef struct r1_vk_staging {
    VkBuffer buffer;
    VkDeviceMemory memory;
    uint8_t *map;
    size_t capacity, used;
} r1_vk_staging;

/* A download's host copy, done once the submit that carries the device copy completes. */
typedef struct r1_vk_pending_copy {
    void *dst;
    const uint8_t *src;
    size_t n;
} r1_vk_pending_copy;

/* One batch of recorded work. Frames are used in a ring so that recording the next batch never
 * waits for the device unless the ring is full. */
typedef struct r1_vk_frame {
    VkCommandBuffer cmd;
    VkDescriptorPool pool;
    VkFence fence; /* only without a timeline semaphore */
    uint64_t seq;  /* the submit that carried it; 0 when never submitted */
    int32_t recording;
    int32_t n_commands;
    int32_t n_sets;
    size_t staged; /* upload bytes staged in this frame */
    r1_vk_staging *staging;
    size_t n_staging;
    r1_vk_pending_copy *copies;
    size_t n_copies, cap_copies;
} r1_vk_frame;

enum {
    R1_VK_MAX_DEVICES = 16,
    R1_VK_FRAMES = 4,
    R1_VK_SETS_PER_FRAME = 512,
    R1_VK_BINDINGS = 5,         /* storage buffers per dispatch; unused ones repeat another */
    R1_VK_PUSH_BYTES = 128,     /* the push-constant size every device offers */
    R1_VK_TOKENS_PER_GROUP = 8, /* TOKENS_PER_GROUP in shaders/matmul.comp */
    R1_VK_MAX_GROUP = 256,      /* MAX_GROUP in shaders/matmul.comp */
    R1_VK_MIN_STAGING = 4 << 20,
    R1_VK_KEEP_STAGING = 16 << 20,  /* a frame keeps one staging area up to this size */
    R1_VK_UPLOAD_CHUNK = 32 << 20,  /* large uploads move in pieces of this size ... */
    R1_VK_FRAME_STAGING = 64 << 20, /* ... and a frame stages at most this much of them */
};

/* The push constants of shaders/matmul.comp, in its order. */
typedef struct r1_vk_matmul_params {
    uint32_t rows, cols, n_tokens, row_bytes;
    uint32_t w_offset, s_offset, scale_cols, x_offset, y_offset, groups_x;
} r1_vk_matmul_params;

/* The pipelines: one per weight type for the shaders that read a weight, one per layer op. */
enum {
    R1_VK_P_MATMUL = 0,
    R1_VK_P_MLA = R1_VK_P_MATMUL + R1_DTYPE_COUNT,
    R1_VK_P_RMSNORM = R1_VK_P_MLA + R1_DTYPE_COUNT,
    R1_VK_P_ROPE,
    R1_VK_P_SOFTMAX,
    R1_VK_P_SWIGLU,
    R1_VK_P_ROUTER,
    R1_VK_P_COMBINE,
    R1_VK_N_PIPES
};

struct r1_dev {
    VkInstance instance;
    r1_vk_instance_fns fn;
    VkDebugUtilsMessengerEXT messenger;
    VkPhysicalDevice physical;
    VkPhysicalDeviceProperties props;
    VkPhysicalDeviceMemoryProperties memory;
    uint32_t subgroup_size;
    uint32_t group_size; /* matmul workgroup size chosen from the subgroup size */
    VkDevice device;
    r1_vk_device_fns vk;
    uint32_t queue_family;
    VkQueue queue;

    pthread_mutex_t mu; /* everything below; the backend may be shared across threads */
    uint32_t device_type_index, staging_type_index;
    uint64_t budget_bytes, used_bytes;
    VkCommandPool command_pool;
    VkSemaphore timeline; /* VK_NULL_HANDLE: fences */
    r1_vk_frame frames[R1_VK_FRAMES];
    uint32_t current;
    uint64_t submitted, completed_seq;

    VkDescriptorSetLayout set_layout;
    VkPipelineLayout pipeline_layout;
    VkPipeline pipes[R1_VK_N_PIPES]; /* built on first use */
    int32_t pipe_failed[R1_VK_N_PIPES];
    int32_t has_f64; /* shaderFloat64 enabled (the router scores in double) */
};

static void r1_vk_load(void)
{
    const char *names[] = {"libvulkan.so.1", "libvulkan.so"};
    for (size_t i = 0; i < sizeof names / sizeof names[0] && r1_vk.lib == NULL; i++)
        r1_vk.lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    if (r1_vk.lib == NULL) {
        snprintf(r1_vk.why, sizeof r1_vk.why,
                 "the Vulkan loader (libvulkan.so.1) is not installed");
        return;
    }
    /* POSIX allows the object-to-function pointer conversion that dlsym needs. */
    void *sym = dlsym(r1_vk.lib, "vkGetInstanceProcAddr");
    memcpy(&r1_vk.get_instance_proc, &sym, sizeof sym);
    if (r1_vk.get_instance_proc == NULL) {
        snprintf(r1_vk.why, sizeof r1_vk.why, "libvulkan.so.1 lacks vkGetInstanceProcAddr");
        return;
    }
    r1_vk.create_instance =
        (PFN_vkCreateInstance)r1_vk.get_instance_proc(VK_NULL_HANDLE, "vkCreateInstance");
    r1_vk.enumerate_instance_version = (PFN_vkEnumerateInstanceVersion)r1_vk.get_instance_proc(
        VK_NULL_HANDLE, "vkEnumerateInstanceVersion");
    r1_vk.enumerate_layers = (PFN_vkEnumerateInstanceLayerProperties)r1_vk.get_instance_proc(
        VK_NULL_HANDLE, "vkEnumerateInstanceLayerProperties");
    r1_vk.enumerate_extensions =
        (PFN_vkEnumerateInstanceExtensionProperties)r1_vk.get_instance_proc(
            VK_NULL_HANDLE, "vkEnumerateInstanceExtensionProperties");
    if (r1_vk.create_instance == NULL)
        snprintf(r1_vk.why, sizeof r1_vk.why, "the Vulkan loader lacks vkCreateInstance");
}

/* R1_VULKAN_VALIDATION=1 asks for VK_LAYER_KHRONOS_validation and a messenger that counts and
 * prints its errors; it is a debugging and CI aid, off by default. */
static int r1_vk_validation_requested(void)
{
    const char *v = getenv("R1_VULKAN_VALIDATION");
    return v != NULL && v[0] == '1';
}

static int r1_vk_layer_present(const char *name)
{
    if (r1_vk.enumerate_layers == NULL)
        return 0;
    uint32_t n = 0;
    if (r1_vk.enumerate_layers(&n, NULL) != VK_SUCCESS || n == 0)
        return 0;
    VkLayerProperties *layers = calloc(n, sizeof *layers);
    if (layers == NULL)
        return 0;
    int found = 0;
    if (r1_vk.enumerate_layers(&n, layers) == VK_SUCCESS)
        for (uint32_t i = 0; i < n && !found; i++)
            found = strcmp(layers[i].layerName, name) == 0;
    free(layers);
    return found;
}

static VKAPI_ATTR VkBool32 VKAPI_CALL r1_vk_on_message(
    VkDebugUtilsMessageSeverityFlagBitsEXT severity, VkDebugUtilsMessageTypeFlagsEXT types,
    const VkDebugUtilsMessengerCallbackDataEXT *data, void *user)
{
    (void)types, (void)user;
    if (severity & VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT) {
        atomic_fetch_add(&r1_vk_validation_errors, 1);
        fprintf(stderr, "libr1 vulkan validation error: %s\n",
                data && data->pMessage ? data->pMessage : "(no message)");
    } else if (severity & VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT) {
        fprintf(stderr, "libr1 vulkan validation warning: %s\n",
                data && data->pMessage ? data->pMessage : "(no message)");
    }
    return VK_FALSE;
}

static r1_status r1_vk_create_instance(VkInstance *out, r1_vk_instance_fns *fn,
                                       VkDebugUtilsMessengerEXT *messenger)
{
    pthread_once(&r1_vk.once, r1_vk_load);
    memset(fn, 0, sizeof *fn);
    if (messenger != NULL)
        *messenger = VK_NULL_HANDLE;
    if (r1_vk.create_instance == NULL)
        return r1_error__set(R1_ERR_UNSUPPORTED, "vulkan: %s", r1_vk.why);
    uint32_t version = VK_API_VERSION_1_0;
    if (r1_vk.enumerate_instance_version != NULL)
        r1_vk.enumerate_instance_version(&version);
    if (version < VK_API_VERSION_1_2)
        return r1_error__set(R1_ERR_UNSUPPORTED, "vulkan: instance version %u.%u is below 1.2",
                             VK_API_VERSION_MAJOR(version), VK_API_VERSION_MINOR(version));
    VkApplicationInfo app = {
        .sType = VK_STRUCTURE_TYPE_APPLICATION_INFO,
        .pApplicationName = "libr1",
        .pEngineName = "libr1",
        .apiVersion = VK_API_VERSION_1_2,
    };
    const char *layer = "VK_LAYER_KHRONOS_validation";
    const char *extension = VK_EXT_DEBUG_UTILS_EXTENSION_NAME;
    int validate = messenger != NULL && r1_vk_validation_requested();
    if (validate && !r1_vk_layer_present(layer)) {
        fprintf(stderr, "libr1 vulkan: R1_VULKAN_VALIDATION is set but %s is not installed\n",
                layer);
        validate = 0;
    }
    VkDebugUtilsMessengerCreateInfoEXT msg_info = {
        .sType = VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT,
        .messageSeverity = VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT |
                           VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT,
        .messageType = VK_DEBUG_UTILS_MESSAGE_TYPE_GENERAL_BIT_EXT |
                       VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT |
                       VK_DEBUG_UTILS_MESSAGE_TYPE_PERFORMANCE_BIT_EXT,
        .pfnUserCallback = r1_vk_on_message,
    };
    VkInstanceCreateInfo info = {
        .sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO,
        .pNext = validate ? &msg_info : NULL, /* also covers instance creation and teardown */
        .pApplicationInfo = &app,
        .enabledLayerCount = validate ? 1 : 0,
        .ppEnabledLayerNames = validate ? &layer : NULL,
        .enabledExtensionCount = validate ? 1 : 0,
        .ppEnabledExtensionNames = validate ? &extension : NULL,
    };
    VkResult res = r1_vk.create_instance(&info, NULL, out);
    if (res == VK_ERROR_INCOMPATIBLE_DRIVER) /* the loader found no driver at all */
        return r1_error__set(R1_ERR_UNSUPPORTED, "vulkan: no Vulkan device is present (the "
                                                 "loader found no driver)");
    if (res != VK_SUCCESS)
        return r1_error__set(R1_ERR_BACKEND, "vulkan: vkCreateInstance failed (VkResult %d)",
                             (int)res);
#define R1_VK_LOAD(field, name) fn->field = (PFN_##name)r1_vk.get_instance_proc(*out, #name)
    R1_VK_LOAD(destroy_instance, vkDestroyInstance);
    R1_VK_LOAD(enumerate_physical_devices, vkEnumeratePhysicalDevices);
    R1_VK_LOAD(get_properties, vkGetPhysicalDeviceProperties);
    R1_VK_LOAD(get_properties2, vkGetPhysicalDeviceProperties2);
    R1_VK_LOAD(get_features2, vkGetPhysicalDeviceFeatures2);
    R1_VK_LOAD(get_memory_properties, vkGetPhysicalDeviceMemoryProperties);
    R1_VK_LOAD(get_queue_families, vkGetPhysicalDeviceQueueFamilyProperties);
    R1_VK_LOAD(create_device, vkCreateDevice);
    R1_VK_LOAD(get_device_proc, vkGetDeviceProcAddr);
    if (validate) {
        R1_VK_LOAD(create_messenger, vkCreateDebugUtilsMessengerEXT);
        R1_VK_LOAD(destroy_messenger, vkDestroyDebugUtilsMessengerEXT);
    }
#undef R1_VK_LOAD
    if (!fn->destroy_instance || !fn->enumerate_physical_devices || !fn->get_properties ||
        !fn->get_properties2 || !fn->get_features2 || !fn->get_memory_properties ||
        !fn->get_queue_families || !fn->create_device || !fn->get_device_proc) {
        if (fn->destroy_instance)
            fn->destroy_instance(*out, NULL);
        return r1_error__set(R1_ERR_BACKEND, "vulkan: the instance lacks core 1.1 functions");
    }
    if (validate && fn->create_messenger != NULL &&
        fn->create_messenger(*out, &msg_info, NULL, messenger) == VK_SUCCESS)
        atomic_store(&r1_vk_validation_enabled, 1);
    return R1_OK;
}

uint64_t r1_backend_vulkan__validation_errors(void)
{
    return atomic_load(&r1_vk_validation_errors);
}

int32_t r1_backend_vulkan__validation_enabled(void)
{
    return atomic_load(&r1_vk_validation_enabled);
}

/* Devices in the order users pick them by index: discrete GPUs first, then integrated, then
 * the rest (virtual, CPU implementations such as lavapipe), stable within each class. */
static int r1_vk_rank(VkPhysicalDeviceType t)
{
    switch (t) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return 0;
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return 1;
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return 2;
    default: return 3;
    }
}

/* Fills up to cap devices in preference order; returns the count (0 with a message on error). */
static uint32_t r1_vk_devices(VkInstance inst, const r1_vk_instance_fns *fn, VkPhysicalDevice *out,
                              uint32_t cap)
{
    uint32_t n = cap;
    VkResult res = fn->enumerate_physical_devices(inst, &n, out);
    if (res != VK_SUCCESS && res != VK_INCOMPLETE)
        return 0;
    for (uint32_t i = 1; i < n; i++) { /* insertion sort keeps equal ranks in order */
        VkPhysicalDevice d = out[i];
        VkPhysicalDeviceProperties p;
        fn->get_properties(d, &p);
        int rank = r1_vk_rank(p.deviceType);
        uint32_t j = i;
        while (j > 0) {
            VkPhysicalDeviceProperties q;
            fn->get_properties(out[j - 1], &q);
            if (r1_vk_rank(q.deviceType) <= rank)
                break;
            out[j] = out[j - 1];
            j--;
        }
        out[j] = d;
    }
    return n;
}

static int32_t vk_probe(char *why, size_t why_len)
{
    VkInstance inst;
    r1_vk_instance_fns fn;
    if (r1_vk_create_instance(&inst, &fn, NULL) != R1_OK) {
        snprintf(why, why_len, "%s", r1_error__message());
        return 0;
    }
    VkPhysicalDevice devs[R1_VK_MAX_DEVICES];
    uint32_t n = r1_vk_devices(inst, &fn, devs, R1_VK_MAX_DEVICES);
    /* Say what each device is: lavapipe (llvmpipe) is a Vulkan device that computes on the CPU,
     * and a user reading "available" would otherwise expect a GPU's speed. */
    size_t used = 0;
    for (uint32_t i = 0; i < n && used < why_len; i++) {
        VkPhysicalDeviceProperties p;
        fn.get_properties(devs[i], &p);
        const char *kind = p.deviceType == VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU ? "discrete GPU"
                           : p.deviceType == VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU
                               ? "integrated GPU"
                           : p.deviceType == VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU ? "virtual GPU"
                           : p.deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU
                               ? "software renderer on the CPU, not a GPU"
                               : "unknown kind";
        int w = snprintf(why + used, why_len - used, "%s%u: %s (%s)", i ? "; " : "", i,
                         p.deviceName, kind);
        used += w > 0 ? (size_t)w : 0;
    }
    fn.destroy_instance(inst, NULL);
    if (n == 0)
        snprintf(why, why_len, "no Vulkan device is present");
    return (int32_t)n;
}

/* ---- memory ------------------------------------------------------------------------------- */

static uint32_t r1_vk_memory_type(const r1_dev *dev, uint32_t allowed, VkMemoryPropertyFlags want,
                                  VkMemoryPropertyFlags prefer)
{
    uint32_t fallback = UINT32_MAX;
    for (uint32_t i = 0; i < dev->memory.memoryTypeCount; i++) {
        VkMemoryPropertyFlags f = dev->memory.memoryTypes[i].propertyFlags;
        if (!(allowed & (1u << i)) || (f & want) != want)
            continue;
        if ((f & prefer) == prefer)
            return i;
        if (fallback == UINT32_MAX)
            fallback = i;
    }
    return fallback;
}

/* A buffer bound to its own allocation. */
static r1_status r1_vk_buffer(r1_dev *dev, size_t bytes, VkBufferUsageFlags usage, int host,
                              VkBuffer *buffer, VkDeviceMemory *memory, size_t *charged)
{
    *buffer = VK_NULL_HANDLE;
    *memory = VK_NULL_HANDLE;
    VkBufferCreateInfo info = {
        .sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
        .size = bytes ? bytes : 4,
        .usage = usage,
        .sharingMode = VK_SHARING_MODE_EXCLUSIVE,
    };
    if (dev->vk.vkCreateBuffer(dev->device, &info, NULL, buffer) != VK_SUCCESS)
        return r1_error__set(R1_ERR_NO_MEMORY, "vulkan: cannot create a buffer of %zu bytes",
                             bytes);
    VkMemoryRequirements req;
    dev->vk.vkGetBufferMemoryRequirements(dev->device, *buffer, &req);
    uint32_t type =
        host ? r1_vk_memory_type(dev, req.memoryTypeBits,
                                 VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT |
                                     VK_MEMORY_PROPERTY_HOST_COHERENT_BIT,
                                 VK_MEMORY_PROPERTY_HOST_CACHED_BIT)
             : r1_vk_memory_type(dev, req.memoryTypeBits, 0, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT);
    r1_status st = R1_OK;
    if (type == UINT32_MAX) {
        st = r1_error__set(R1_ERR_BACKEND, "vulkan: no memory type suits a %s buffer",
                           host ? "staging" : "device");
    } else if (!host && dev->used_bytes + req.size > dev->budget_bytes) {
        st = r1_error__set(R1_ERR_NO_MEMORY,
                           "vulkan: %" PRIu64 " more bytes would exceed the device memory budget "
                           "(%" PRIu64 " of %" PRIu64 " bytes in use)",
                           (uint64_t)req.size, dev->used_bytes, dev->budget_bytes);
    } else {
        VkMemoryAllocateInfo alloc = {
            .sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO,
            .allocationSize = req.size,
            .memoryTypeIndex = type,
        };
        VkResult res = dev->vk.vkAllocateMemory(dev->device, &alloc, NULL, memory);
        if (res != VK_SUCCESS)
            st = r1_error__set(R1_ERR_NO_MEMORY,
                               "vulkan: allocating %" PRIu64 " bytes of %s memory failed "
                               "(VkResult %d)",
                               (uint64_t)req.size, host ? "staging" : "device", (int)res);
        else if (dev->vk.vkBindBufferMemory(dev->device, *buffer, *memory, 0) != VK_SUCCESS)
            st = r1_error__set(R1_ERR_BACKEND, "vulkan: vkBindBufferMemory failed");
    }
    if (st != R1_OK) {
        if (*memory != VK_NULL_HANDLE)
            dev->vk.vkFreeMemory(dev->device, *memory, NULL);
        dev->vk.vkDestroyBuffer(dev->device, *buffer, NULL);
        *buffer = VK_NULL_HANDLE;
        *memory = VK_NULL_HANDLE;
        return st;
    }
    *charged = (size_t)req.size;
    return R1_OK;
}

static void r1_vk_staging_free(r1_dev *dev, r1_vk_staging *s)
{
    if (s->buffer != VK_NULL_HANDLE)
        dev->vk.vkDestroyBuffer(dev->device, s->buffer, NULL);
    if (s->memory != VK_NULL_HANDLE)
        dev->vk.vkFreeMemory(dev->device, s->memory, NULL); /* unmaps it */
    memset(s, 0, sizeof *s);
}

/* n bytes of the frame's staging memory, valid until the frame is recycled. */
static r1_status r1_vk_stage(r1_dev *dev, r1_vk_frame *f, size_t n, r1_vk_staging **out,
                             size_t *offset)
{
    size_t need = (n + 15) & ~(size_t)15;
    for (size_t i = 0; i < f->n_staging; i++)
        if (f->staging[i].capacity - f->staging[i].used >= need) {
            *out = &f->staging[i];
            *offset = f->staging[i].used;
            f->staging[i].used += need;
            return R1_OK;
        }
    r1_vk_staging *grown = realloc(f->staging, (f->n_staging + 1) * sizeof *grown);
    if (grown == NULL)
        return r1_error__set(R1_ERR_NO_MEMORY, "out of memory");
    f->staging = grown;
    r1_vk_staging *s = &f->staging[f->n_staging];
    memset(s, 0, sizeof *s);
    size_t cap = need > R1_VK_MIN_STAGING ? need : R1_VK_MIN_STAGING, charged = 0;
    r1_status st =
        r1_vk_buffer(dev, cap, VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT,
                     1, &s->buffer, &s->memory, &charged);
    if (st != R1_OK)
        return st;
    void *map = NULL;
    if (dev->vk.vkMapMemory(dev->device, s->memory, 0, VK_WHOLE_SIZE, 0, &map) != VK_SUCCESS) {
        r1_vk_staging_free(dev, s);
        return r1_error__set(R1_ERR_BACKEND, "vulkan: cannot map staging memory");
    }
    s->map = map;
    s->capacity = cap;
    s->used = need;
    f->n_staging++;
    *out = s;
    *offset = 0;
    return R1_OK;
}

/* ---- frames and synchronisation ----------------------------------------------------------- */

/* Waits (without the lock's other users in mind: callers hold it) until seq is complete. */
static r1_status r1_vk_wait_seq(r1_dev *dev, uint64_t seq)
{
    if (seq <= dev->completed_seq)
        return R1_OK;
    if (dev->timeline != VK_NULL_HANDLE) {
        VkSemaphoreWaitInfo info = {
            .sType = VK_STRUCTURE_TYPE_SEMAPHORE_WAIT_INFO,
            .semaphoreCount = 1,
            .pSemaphores = &dev->timeline,
            .pValues = &seq,
        };
        VkResult res = dev->vk.vkWaitSemaphores(dev->device, &info, UINT64_MAX);
        if (res != VK_SUCCESS)
            return r1_error__set(R1_ERR_BACKEND,
                                 "vulkan: waiting for submit %" PRIu64 " failed (VkResult %d)", seq,
                                 (int)res);
    } else {
        for (int i = 0; i < R1_VK_FRAMES; i++) {
            r1_vk_frame *f = &dev->frames[i];
            if (f->seq == 0 || f->seq > seq || f->seq <= dev->completed_seq)
                continue;
            VkResult res = dev->vk.vkWaitForFences(dev->device, 1, &f->fence, VK_TRUE, UINT64_MAX);
            if (res != VK_SUCCESS)
                return r1_error__set(R1_ERR_BACKEND,
                                     "vulkan: waiting for a fence failed "
                                     "(VkResult %d)",
                                     (int)res);
        }
    }
    dev->completed_seq = seq;
    return R1_OK;
}

static uint64_t r1_vk_poll(r1_dev *dev)
{
    if (dev->timeline != VK_NULL_HANDLE) {
        uint64_t value = 0;
        if (dev->vk.vkGetSemaphoreCounterValue(dev->device, dev->timeline, &value) == VK_SUCCESS &&
            value > dev->completed_seq)
            dev->completed_seq = value;
        return dev->completed_seq;
    }
    /* One queue completes in submission order: the answer is just below the oldest frame whose
     * fence is still unsignalled. */
    uint64_t done = dev->submitted;
    for (int i = 0; i < R1_VK_FRAMES; i++) {
        const r1_vk_frame *f = &dev->frames[i];
        if (f->seq > dev->completed_seq && f->seq - 1 < done &&
            dev->vk.vkGetFenceStatus(dev->device, f->fence) != VK_SUCCESS)
            done = f->seq - 1;
    }
    if (done > dev->completed_seq)
        dev->completed_seq = done;
    return dev->completed_seq;
}

/* Host copies of the downloads of every completed frame. */
static void r1_vk_finish_copies(r1_dev *dev)
{
    for (int i = 0; i < R1_VK_FRAMES; i++) {
        r1_vk_frame *f = &dev->frames[i];
        if (f->recording || f->seq == 0 || f->seq > dev->completed_seq)
            continue;
        for (size_t k = 0; k < f->n_copies; k++)
            memcpy(f->copies[k].dst, f->copies[k].src, f->copies[k].n);
        f->n_copies = 0;
    }
}

/* The frame being recorded, starting one (and recycling the oldest) when none is. */
static r1_status r1_vk_frame_begin(r1_dev *dev, r1_vk_frame **out)
{
    r1_vk_frame *f = &dev->frames[dev->current];
    if (f->recording) {
        *out = f;
        return R1_OK;
    }
    r1_status st = r1_vk_wait_seq(dev, f->seq);
    if (st != R1_OK)
        return st;
    r1_vk_finish_copies(dev);
    if (dev->timeline == VK_NULL_HANDLE && f->seq != 0 &&
        dev->vk.vkResetFences(dev->device, 1, &f->fence) != VK_SUCCESS)
        return r1_error__set(R1_ERR_BACKEND, "vulkan: vkResetFences failed");
    dev->vk.vkResetDescriptorPool(dev->device, f->pool, 0);
    /* Large staging areas (a dense tensor's upload) are given back; one small one stays. */
    size_t keep = 0;
    for (size_t i = 0; i < f->n_staging; i++) {
        if (keep == 0 && f->staging[i].capacity <= R1_VK_KEEP_STAGING) {
            f->staging[i].used = 0;
            f->staging[0] = f->staging[i];
            keep = 1;
        } else {
            r1_vk_staging_free(dev, &f->staging[i]);
        }
    }
    f->n_staging = keep;
    VkCommandBufferBeginInfo begin = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
        .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT,
    };
    if (dev->vk.vkBeginCommandBuffer(f->cmd, &begin) != VK_SUCCESS)
        return r1_error__set(R1_ERR_BACKEND, "vulkan: vkBeginCommandBuffer failed");
    f->recording = 1;
    f->n_commands = 0;
    f->n_sets = 0;
    f->staged = 0;
    *out = f;
    return R1_OK;
}

/* Commands of a frame run in recording order as far as memory is concerned: a full barrier
 * between consecutive transfer and compute commands is simple and, for the few large commands
 * a matrix product records, cheap. */
static void r1_vk_order(r1_dev *dev, r1_vk_frame *f)
{
    if (f->n_commands++ == 0)
        return;
    VkMemoryBarrier barrier = {
        .sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
        .srcAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT | VK_ACCESS_SHADER_WRITE_BIT,
        .dstAccessMask = VK_ACCESS_TRANSFER_READ_BIT | VK_ACCESS_TRANSFER_WRITE_BIT |
                         VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT,
    };
    VkPipelineStageFlags stages =
        VK_PIPELINE_STAGE_TRANSFER_BIT | VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT;
    dev->vk.vkCmdPipelineBarrier(f->cmd, stages, stages, 0, 1, &barrier, 0, NULL, 0, NULL);
}

/* ---- device lifetime ---------------------------------------------------------------------- */

static void vk_close(r1_dev *dev)
{
    if (dev == NULL)
        return;
    if (dev->device != VK_NULL_HANDLE) {
        dev->vk.vkDeviceWaitIdle(dev->device);
        for (int i = 0; i < R1_VK_FRAMES; i++) {
            r1_vk_frame *f = &dev->frames[i];
            for (size_t k = 0; k < f->n_staging; k++)
                r1_vk_staging_free(dev, &f->staging[k]);
            free(f->staging);
            free(f->copies);
            if (f->pool != VK_NULL_HANDLE)
                dev->vk.vkDestroyDescriptorPool(dev->device, f->pool, NULL);
            if (f->fence != VK_NULL_HANDLE)
                dev->vk.vkDestroyFence(dev->device, f->fence, NULL);
        }
        for (int i = 0; i < R1_VK_N_PIPES; i++)
            if (dev->pipes[i] != VK_NULL_HANDLE)
                dev->vk.vkDestroyPipeline(dev->device, dev->pipes[i], NULL);
        if (dev->pipeline_layout != VK_NULL_HANDLE)
            dev->vk.vkDestroyPipelineLayout(dev->device, dev->pipeline_layout, NULL);
        if (dev->set_layout != VK_NULL_HANDLE)
            dev->vk.vkDestroyDescriptorSetLayout(dev->device, dev->set_layout, NULL);
        if (dev->timeline != VK_NULL_HANDLE)
            dev->vk.vkDestroySemaphore(dev->device, dev->timeline, NULL);
        if (dev->command_pool != VK_NULL_HANDLE) /* frees the command buffers */
            dev->vk.vkDestroyCommandPool(dev->device, dev->command_pool, NULL);
        dev->vk.vkDestroyDevice(dev->device, NULL);
        pthread_mutex_destroy(&dev->mu);
    }
    if (dev->messenger != VK_NULL_HANDLE)
        dev->fn.destroy_messenger(dev->instance, dev->messenger, NULL);
    if (dev->instance != VK_NULL_HANDLE)
        dev->fn.destroy_instance(dev->instance, NULL);
    free(dev);
}

/* name contains part, ignoring ASCII case. */
static int r1_vk_name_has(const char *name, const char *part)
{
    const size_t n = strlen(part);
    for (; *name != '\0'; name++) {
        size_t i = 0;
        while (i < n && name[i] != '\0' &&
               tolower((unsigned char)name[i]) == tolower((unsigned char)part[i]))
            i++;
        if (i == n)
            return 1;
    }
    return n == 0;
}

/* The device a selector names: a decimal index or a case-insensitive part of its name;
 * UINT32_MAX when none does. */
static uint32_t r1_vk_find(const r1_dev *dev, const VkPhysicalDevice *devs, uint32_t n,
                           const char *selector)
{
    char *end = NULL;
    unsigned long v = strtoul(selector, &end, 10);
    if (end != selector && *end == '\0')
        return v < n ? (uint32_t)v : UINT32_MAX;
    for (uint32_t i = 0; i < n; i++) {
        VkPhysicalDeviceProperties p;
        dev->fn.get_properties(devs[i], &p);
        if (r1_vk_name_has(p.deviceName, selector))
            return i;
    }
    return UINT32_MAX;
}

/* The devices present, for a message: "0: NAME, 1: NAME". */
static void r1_vk_list(const r1_dev *dev, const VkPhysicalDevice *devs, uint32_t n, char *out,
                       size_t cap)
{
    size_t at = 0;
    out[0] = '\0';
    for (uint32_t i = 0; i < n && at < cap; i++) {
        VkPhysicalDeviceProperties p;
        dev->fn.get_properties(devs[i], &p);
        int w = snprintf(out + at, cap - at, "%s%u: %s", i ? ", " : "", (unsigned)i, p.deviceName);
        at += w > 0 ? (size_t)w : 0;
    }
}

/* The device to open: the one selector names (r1_model_opts_set_device), else the index given
 * to open() counted from the device R1_VULKAN_DEVICE names (by index, "1", or by a part of its
 * name, "llvmpipe"), else from the first. */
static r1_status r1_vk_pick(r1_dev *dev, const VkPhysicalDevice *devs, uint32_t n, int32_t index,
                            const char *selector, uint32_t *picked)
{
    if (selector != NULL) {
        *picked = r1_vk_find(dev, devs, n, selector);
        if (*picked != UINT32_MAX)
            return R1_OK;
        char present[512];
        r1_vk_list(dev, devs, n, present, sizeof present);
        return r1_error__set(R1_ERR_NOT_FOUND, "vulkan: no device matches '%s' (present: %s)",
                             selector, n ? present : "none");
    }
    const char *want = getenv("R1_VULKAN_DEVICE");
    uint32_t first = 0;
    if (want != NULL && want[0] != '\0') {
        first = r1_vk_find(dev, devs, n, want);
        if (first == UINT32_MAX)
            return r1_error__set(R1_ERR_NOT_FOUND,
                                 "vulkan: no device name contains '%s' (R1_VULKAN_DEVICE)", want);
    }
    if (index < 0 || (uint64_t)first + (uint64_t)index >= n)
        return r1_error__set(n ? R1_ERR_OUT_OF_RANGE : R1_ERR_UNSUPPORTED,
                             "vulkan: device index %u requested, %u present",
                             (unsigned)(first + (uint32_t)(index < 0 ? 0 : index)), n);
    *picked = first + (uint32_t)index;
    return R1_OK;
}

static uint32_t r1_vk_pow2_clamp(uint32_t v, uint32_t lo, uint32_t hi)
{
    uint32_t p = lo;
    while (p < v && p < hi)
        p *= 2;
    return p;
}

/* Budget: the device-local heap, or R1_VULKAN_MEMORY_BUDGET bytes when set (tests use a small
 * one to exercise the CPU fallback). */
static uint64_t r1_vk_budget(const r1_dev *dev)
{
    uint64_t heap = 0;
    for (uint32_t i = 0; i < dev->memory.memoryHeapCount; i++)
        if ((dev->memory.memoryHeaps[i].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT) &&
            dev->memory.memoryHeaps[i].size > heap)
            heap = dev->memory.memoryHeaps[i].size;
    const char *env = getenv("R1_VULKAN_MEMORY_BUDGET");
    if (env != NULL && env[0] != '\0') {
        char *end = NULL;
        unsigned long long v = strtoull(env, &end, 10);
        if (end != env && *end == '\0')
            return v;
    }
    return heap;
}

static r1_status r1_vk_open_queue_objects(r1_dev *dev)
{
    VkCommandPoolCreateInfo pool_info = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
        .flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT,
        .queueFamilyIndex = dev->queue_family,
    };
    if (dev->vk.vkCreateCommandPool(dev->device, &pool_info, NULL, &dev->command_pool) !=
        VK_SUCCESS)
        return r1_error__set(R1_ERR_BACKEND, "vulkan: vkCreateCommandPool failed");
    VkDescriptorPoolSize sizes = {
        .type = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
        .descriptorCount = R1_VK_BINDINGS * R1_VK_SETS_PER_FRAME,
    };
    VkDescriptorPoolCreateInfo dpool_info = {
        .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO,
        .maxSets = R1_VK_SETS_PER_FRAME,
        .poolSizeCount = 1,
        .pPoolSizes = &sizes,
    };
    VkFenceCreateInfo fence_info = {.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
    for (int i = 0; i < R1_VK_FRAMES; i++) {
        r1_vk_frame *f = &dev->frames[i];
        VkCommandBufferAllocateInfo cb_info = {
            .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
            .commandPool = dev->command_pool,
            .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
            .commandBufferCount = 1,
        };
        if (dev->vk.vkAllocateCommandBuffers(dev->device, &cb_info, &f->cmd) != VK_SUCCESS)
            return r1_error__set(R1_ERR_BACKEND, "vulkan: vkAllocateCommandBuffers failed");
        if (dev->vk.vkCreateDescriptorPool(dev->device, &dpool_info, NULL, &f->pool) != VK_SUCCESS)
            return r1_error__set(R1_ERR_BACKEND, "vulkan: vkCreateDescriptorPool failed");
        if (dev->timeline == VK_NULL_HANDLE &&
            dev->vk.vkCreateFence(dev->device, &fence_info, NULL, &f->fence) != VK_SUCCESS)
            return r1_error__set(R1_ERR_BACKEND, "vulkan: vkCreateFence failed");
    }
    VkDescriptorSetLayoutBinding bindings[R1_VK_BINDINGS];
    for (uint32_t i = 0; i < R1_VK_BINDINGS; i++)
        bindings[i] = (VkDescriptorSetLayoutBinding){
            .binding = i,
            .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
            .descriptorCount = 1,
            .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT,
        };
    VkDescriptorSetLayoutCreateInfo set_info = {
        .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO,
        .bindingCount = R1_VK_BINDINGS,
        .pBindings = bindings,
    };
    if (dev->vk.vkCreateDescriptorSetLayout(dev->device, &set_info, NULL, &dev->set_layout) !=
        VK_SUCCESS)
        return r1_error__set(R1_ERR_BACKEND, "vulkan: vkCreateDescriptorSetLayout failed");
    VkPushConstantRange range = {
        .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT,
        .size = R1_VK_PUSH_BYTES, /* the largest parameter block of any shader */
    };
    VkPipelineLayoutCreateInfo layout_info = {
        .sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO,
        .setLayoutCount = 1,
        .pSetLayouts = &dev->set_layout,
        .pushConstantRangeCount = 1,
        .pPushConstantRanges = &range,
    };
    if (dev->vk.vkCreatePipelineLayout(dev->device, &layout_info, NULL, &dev->pipeline_layout) !=
        VK_SUCCESS)
        return r1_error__set(R1_ERR_BACKEND, "vulkan: vkCreatePipelineLayout failed");
    return R1_OK;
}

static r1_status r1_vk_open(r1_dev **out, int32_t index, const char *selector)
{
    if (out == NULL)
        return r1_error__set(R1_ERR_INVALID_ARG, "vulkan: out is NULL");
    *out = NULL;
    r1_dev *dev = calloc(1, sizeof *dev);
    if (dev == NULL)
        return r1_error__set(R1_ERR_NO_MEMORY, "cannot allocate the vulkan device");
    r1_status st = r1_vk_create_instance(&dev->instance, &dev->fn, &dev->messenger);
    if (st != R1_OK) {
        free(dev);
        return st;
    }
    VkPhysicalDevice devs[R1_VK_MAX_DEVICES];
    uint32_t n = r1_vk_devices(dev->instance, &dev->fn, devs, R1_VK_MAX_DEVICES), picked = 0;
    if ((st = r1_vk_pick(dev, devs, n, index, selector, &picked)) != R1_OK)
        goto fail;
    dev->physical = devs[picked];
    dev->fn.get_properties(dev->physical, &dev->props);
    dev->fn.get_memory_properties(dev->physical, &dev->memory);

    VkPhysicalDeviceSubgroupProperties subgroup = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES,
    };
    VkPhysicalDeviceProperties2 props2 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2,
        .pNext = &subgroup,
    };
    dev->fn.get_properties2(dev->physical, &props2);
    dev->subgroup_size = subgroup.subgroupSize ? subgroup.subgroupSize : 32;
    /* Two subgroups per workgroup (at least 64 threads) keep a row's reduction short while
     * leaving the device room to overlap rows; the shader needs a power of two. */
    uint32_t cap = dev->props.limits.maxComputeWorkGroupSize[0];
    if (cap > dev->props.limits.maxComputeWorkGroupInvocations)
        cap = dev->props.limits.maxComputeWorkGroupInvocations;
    if (cap > R1_VK_MAX_GROUP)
        cap = R1_VK_MAX_GROUP;
    dev->group_size = r1_vk_pow2_clamp(2 * dev->subgroup_size < 64 ? 64 : 2 * dev->subgroup_size,
                                       R1_VK_TOKENS_PER_GROUP, cap);
    if (dev->group_size > cap)
        dev->group_size /= 2;

    VkPhysicalDeviceVulkan12Features features12 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES,
    };
    VkPhysicalDeviceFeatures2 features = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2,
        .pNext = &features12,
    };
    int timeline = dev->props.apiVersion >= VK_API_VERSION_1_2;
    if (timeline) {
        dev->fn.get_features2(dev->physical, &features);
        timeline = features12.timelineSemaphore == VK_TRUE;
    } else {
        features.pNext = NULL;
        dev->fn.get_features2(dev->physical, &features);
    }
    /* Routing compares scores in double like lib/model/router.c; without it the router runs on the
     * CPU (supports() says 0). */
    dev->has_f64 = features.features.shaderFloat64 == VK_TRUE;
    if (getenv("R1_VULKAN_NO_TIMELINE") != NULL) /* tests the fence path on any device */
        timeline = 0;

    VkQueueFamilyProperties families[32];
    uint32_t n_families = 32;
    dev->fn.get_queue_families(dev->physical, &n_families, families);
    dev->queue_family = UINT32_MAX;
    for (uint32_t i = 0; i < n_families; i++)
        if (families[i].queueFlags & VK_QUEUE_COMPUTE_BIT) {
            dev->queue_family = i;
            break;
        }
    if (dev->queue_family == UINT32_MAX) {
        st = r1_error__set(R1_ERR_UNSUPPORTED, "vulkan: '%s' has no compute queue",
                           dev->props.deviceName);
        goto fail;
    }
    float priority = 1.0f;
    VkDeviceQueueCreateInfo qinfo = {
        .sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO,
        .queueFamilyIndex = dev->queue_family,
        .queueCount = 1,
        .pQueuePriorities = &priority,
    };
    VkPhysicalDeviceVulkan12Features enable12 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES,
        .timelineSemaphore = timeline ? VK_TRUE : VK_FALSE,
    };
    VkPhysicalDeviceFeatures enable10 = {.shaderFloat64 = dev->has_f64 ? VK_TRUE : VK_FALSE};
    VkDeviceCreateInfo dinfo = {
        .sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO,
        .pNext = timeline ? &enable12 : NULL,
        .queueCreateInfoCount = 1,
        .pQueueCreateInfos = &qinfo,
        .pEnabledFeatures = &enable10,
    };
    VkResult res = dev->fn.create_device(dev->physical, &dinfo, NULL, &dev->device);
    if (res != VK_SUCCESS) {
        dev->device = VK_NULL_HANDLE;
        st = r1_error__set(R1_ERR_BACKEND, "vulkan: vkCreateDevice on '%s' failed (VkResult %d)",
                           dev->props.deviceName, (int)res);
        goto fail;
    }
    int complete = 1;
#define R1_VK_FETCH(name)                                                                          \
    dev->vk.name = (PFN_##name)dev->fn.get_device_proc(dev->device, #name);                        \
    complete = complete && dev->vk.name != NULL;
    R1_VK_DEVICE_FNS(R1_VK_FETCH)
#undef R1_VK_FETCH
    if (!complete) {
        /* Without vkDestroyDevice the device cannot be torn down; it is left to process exit. */
        if (dev->vk.vkDestroyDevice != NULL)
            dev->vk.vkDestroyDevice(dev->device, NULL);
        dev->device = VK_NULL_HANDLE;
        st = r1_error__set(R1_ERR_BACKEND, "vulkan: device lacks core 1.0 functions");
        goto fail;
    }
    pthread_mutex_init(&dev->mu, NULL);
    if (timeline) {
        dev->vk.vkWaitSemaphores =
            (PFN_vkWaitSemaphores)dev->fn.get_device_proc(dev->device, "vkWaitSemaphores");
        dev->vk.vkGetSemaphoreCounterValue =
            (PFN_vkGetSemaphoreCounterValue)dev->fn.get_device_proc(dev->device,
                                                                    "vkGetSemaphoreCounterValue");
        VkSemaphoreTypeCreateInfo type_info = {
            .sType = VK_STRUCTURE_TYPE_SEMAPHORE_TYPE_CREATE_INFO,
            .semaphoreType = VK_SEMAPHORE_TYPE_TIMELINE,
            .initialValue = 0,
        };
        VkSemaphoreCreateInfo sem_info = {
            .sType = VK_STRUCTURE_TYPE_SEMAPHORE_CREATE_INFO,
            .pNext = &type_info,
        };
        if (dev->vk.vkWaitSemaphores == NULL || dev->vk.vkGetSemaphoreCounterValue == NULL ||
            dev->vk.vkCreateSemaphore(dev->device, &sem_info, NULL, &dev->timeline) != VK_SUCCESS)
            dev->timeline = VK_NULL_HANDLE;
    }
    dev->vk.vkGetDeviceQueue(dev->device, dev->queue_family, 0, &dev->queue);
    dev->budget_bytes = r1_vk_budget(dev);
    dev->device_type_index = UINT32_MAX;
    if ((st = r1_vk_open_queue_objects(dev)) != R1_OK)
        goto fail;
    *out = dev;
    return R1_OK;
fail:
    vk_close(dev);
    return st;
}

static r1_status vk_open(r1_dev **out, int32_t index)
{
    return r1_vk_open(out, index, NULL);
}

static r1_status vk_open_selected(r1_dev **out, const char *selector)
{
    if (selector == NULL)
        return r1_vk_open(out, 0, NULL);
    if (out != NULL)
        *out = NULL;
    return selector[0] == '\0' ? r1_error__set(R1_ERR_INVALID_ARG, "vulkan: an empty device name")
                               : r1_vk_open(out, 0, selector);
}

static r1_status vk_device_info(r1_dev *dev, r1_device_info *out)
{
    if (dev == NULL || out == NULL)
        return r1_error__set(R1_ERR_INVALID_ARG, "vulkan: device_info needs a device and out");
    memset(out, 0, sizeof *out);
    snprintf(out->name, sizeof out->name, "%s", dev->props.deviceName);
    for (uint32_t i = 0; i < dev->memory.memoryHeapCount; i++)
        if (dev->memory.memoryHeaps[i].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT)
            out->memory_total_bytes += dev->memory.memoryHeaps[i].size;
    pthread_mutex_lock(&dev->mu);
    out->memory_free_bytes =
        dev->budget_bytes > dev->used_bytes ? dev->budget_bytes - dev->used_bytes : 0;
    pthread_mutex_unlock(&dev->mu);
    /* Buffers are separate allocations reached through staging copies even on a CPU device:
     * the backend never reads host memory in place (wrap_host is NULL). */
    out->host_shared = 0;
    return R1_OK;
}

/* ---- buffers and transfers ---------------------------------------------------------------- */

static r1_status vk_alloc(r1_dev *dev, size_t bytes, r1_buf **out)
{
    if (dev == NULL || out == NULL)
        return r1_error__set(R1_ERR_INVALID_ARG, "vulkan: alloc needs a device and out");
    *out = NULL;
    r1_buf *b = calloc(1, sizeof *b);
    if (b == NULL)
        return r1_error__set(R1_ERR_NO_MEMORY, "out of memory");
    pthread_mutex_lock(&dev->mu);
    size_t charged = 0;
    r1_status st =
        r1_vk_buffer(dev, bytes,
                     VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT |
                         VK_BUFFER_USAGE_TRANSFER_DST_BIT,
                     0, &b->buffer, &b->memory, &charged);
    if (st == R1_OK)
        dev->used_bytes += charged;
    pthread_mutex_unlock(&dev->mu);
    if (st != R1_OK) {
        free(b);
        return st;
    }
    b->bytes = bytes;
    b->charged = charged;
    *out = b;
    return R1_OK;
}

static void vk_free(r1_dev *dev, r1_buf *buf)
{
    if (dev == NULL || buf == NULL)
        return;
    pthread_mutex_lock(&dev->mu);
    dev->used_bytes -= buf->charged;
    dev->vk.vkDestroyBuffer(dev->device, buf->buffer, NULL);
    dev->vk.vkFreeMemory(dev->device, buf->memory, NULL);
    pthread_mutex_unlock(&dev->mu);
    free(buf);
}

static r1_status r1_vk_check_range(const r1_buf *b, size_t off, size_t n, const char *what)
{
    if (b == NULL)
        return r1_error__set(R1_ERR_INVALID_ARG, "vulkan: %s: buffer is NULL", what);
    if (off > b->bytes || n > b->bytes - off)
        return r1_error__set(R1_ERR_OUT_OF_RANGE,
                             "vulkan: %s of %zu bytes at %zu exceeds the buffer's %zu bytes", what,
                             n, off, b->bytes);
    return R1_OK;
}

static r1_status r1_vk_submit_locked(r1_dev *dev, uint64_t *seq_out);

static r1_status vk_upload(r1_dev *dev, r1_buf *dst, size_t off, const void *src, size_t n)
{
    if (dev == NULL || (src == NULL && n > 0))
        return r1_error__set(R1_ERR_INVALID_ARG, "vulkan: upload needs a device and a source");
    r1_status st = r1_vk_check_range(dst, off, n, "upload");
    if (st != R1_OK || n == 0)
        return st;
    pthread_mutex_lock(&dev->mu);
    /* A large tensor moves in pieces, and a frame that holds enough staged bytes is submitted
     * on the way: staging memory stays bounded by the frame ring, not by the tensor. */
    size_t done = 0;
    while (st == R1_OK && done < n) {
        size_t piece = n - done < R1_VK_UPLOAD_CHUNK ? n - done : R1_VK_UPLOAD_CHUNK;
        r1_vk_frame *f = NULL;
        r1_vk_staging *s = NULL;
        size_t at = 0;
        if ((st = r1_vk_frame_begin(dev, &f)) != R1_OK)
            break;
        if (f->staged > 0 && f->staged + piece > R1_VK_FRAME_STAGING) {
            uint64_t seq = 0;
            st = r1_vk_submit_locked(dev, &seq);
            continue;
        }
        if ((st = r1_vk_stage(dev, f, piece, &s, &at)) != R1_OK)
            break;
        /* The host copy happens now, so src is free as soon as this returns (stricter than
         * the contract asks); vkQueueSubmit makes host writes visible to the device. */
        memcpy(s->map + at, (const uint8_t *)src + done, piece);
        f->staged += piece;
        r1_vk_order(dev, f);
        VkBufferCopy region = {.srcOffset = at, .dstOffset = off + done, .size = piece};
        dev->vk.vkCmdCopyBuffer(f->cmd, s->buffer, dst->buffer, 1, &region);
        done += piece;
    }
    pthread_mutex_unlock(&dev->mu);
    return st;
}

static r1_status vk_download(r1_dev *dev, void *dst, r1_buf *src, size_t off, size_t n)
{
    if (dev == NULL || (dst == NULL && n > 0))
        return r1_error__set(R1_ERR_INVALID_ARG, "vulkan: download needs a device and a target");
    r1_status st = r1_vk_check_range(src, off, n, "download");
    if (st != R1_OK || n == 0)
        return st;
    pthread_mutex_lock(&dev->mu);
    r1_vk_frame *f = NULL;
    r1_vk_staging *s = NULL;
    size_t at = 0;
    if ((st = r1_vk_frame_begin(dev, &f)) == R1_OK &&
        (st = r1_vk_stage(dev, f, n, &s, &at)) == R1_OK) {
        if (f->n_copies == f->cap_copies) {
            size_t cap = f->cap_copies ? 2 * f->cap_copies : 16;
            r1_vk_pending_copy *grown = realloc(f->copies, cap * sizeof *grown);
            if (grown == NULL)
                st = r1_error__set(R1_ERR_NO_MEMORY, "out of memory");
            else
                f->copies = grown, f->cap_copies = cap;
        }
        if (st == R1_OK) {
            r1_vk_order(dev, f);
            VkBufferCopy region = {.srcOffset = off, .dstOffset = at, .size = n};
            dev->vk.vkCmdCopyBuffer(f->cmd, src->buffer, s->buffer, 1, &region);
            f->copies[f->n_copies++] = (r1_vk_pending_copy){dst, s->map + at, n};
        }
    }
    pthread_mutex_unlock(&dev->mu);
    return st;
}

/* ---- kernels ------------------------------------------------------------------------------ */

static const uint32_t *r1_vk_spirv(int32_t pipe, size_t *bytes, const char **name)
{
#define R1_VK_SPV(index, array, what)                                                              \
    case index: *bytes = sizeof array, *name = what; return array;
    switch (pipe) {
        R1_VK_SPV(R1_VK_P_MATMUL + R1_DTYPE_F32, r1_vk_spv_matmul_f32, "f32 matmul")
        R1_VK_SPV(R1_VK_P_MATMUL + R1_DTYPE_F16, r1_vk_spv_matmul_f16, "f16 matmul")
        R1_VK_SPV(R1_VK_P_MATMUL + R1_DTYPE_BF16, r1_vk_spv_matmul_bf16, "bf16 matmul")
        R1_VK_SPV(R1_VK_P_MATMUL + R1_DTYPE_FP8_E4M3, r1_vk_spv_matmul_fp8_e4m3, "fp8 matmul")
        R1_VK_SPV(R1_VK_P_MATMUL + R1_DTYPE_Q8_0, r1_vk_spv_matmul_q8_0, "q8_0 matmul")
        R1_VK_SPV(R1_VK_P_MATMUL + R1_DTYPE_Q4_0, r1_vk_spv_matmul_q4_0, "q4_0 matmul")
        R1_VK_SPV(R1_VK_P_MLA + R1_DTYPE_F32, r1_vk_spv_mla_f32, "f32 mla")
        R1_VK_SPV(R1_VK_P_MLA + R1_DTYPE_F16, r1_vk_spv_mla_f16, "f16 mla")
        R1_VK_SPV(R1_VK_P_MLA + R1_DTYPE_BF16, r1_vk_spv_mla_bf16, "bf16 mla")
        R1_VK_SPV(R1_VK_P_MLA + R1_DTYPE_FP8_E4M3, r1_vk_spv_mla_fp8_e4m3, "fp8 mla")
        R1_VK_SPV(R1_VK_P_MLA + R1_DTYPE_Q8_0, r1_vk_spv_mla_q8_0, "q8_0 mla")
        R1_VK_SPV(R1_VK_P_MLA + R1_DTYPE_Q4_0, r1_vk_spv_mla_q4_0, "q4_0 mla")
        R1_VK_SPV(R1_VK_P_RMSNORM, r1_vk_spv_rmsnorm, "rmsnorm")
        R1_VK_SPV(R1_VK_P_ROPE, r1_vk_spv_rope, "rope")
        R1_VK_SPV(R1_VK_P_SOFTMAX, r1_vk_spv_softmax, "softmax")
        R1_VK_SPV(R1_VK_P_SWIGLU, r1_vk_spv_swiglu, "swiglu")
        R1_VK_SPV(R1_VK_P_ROUTER, r1_vk_spv_router, "router")
        R1_VK_SPV(R1_VK_P_COMBINE, r1_vk_spv_combine, "moe combine")
    default: *bytes = 0, *name = "?"; return NULL;
    }
#undef R1_VK_SPV
}

/* A pipeline, built on first use (under the lock). Every shader takes the workgroup size as
 * specialization constant 0, chosen at open() from the device's subgroup size. */
static r1_status r1_vk_pipeline(r1_dev *dev, int32_t pipe, VkPipeline *out)
{
    if (pipe < 0 || pipe >= R1_VK_N_PIPES)
        return r1_error__set(R1_ERR_INTERNAL, "vulkan: no pipeline %d", (int)pipe);
    if (dev->pipes[pipe] != VK_NULL_HANDLE) {
        *out = dev->pipes[pipe];
        return R1_OK;
    }
    size_t bytes = 0;
    const char *name = NULL;
    const uint32_t *code = r1_vk_spirv(pipe, &bytes, &name);
    if (dev->pipe_failed[pipe] || code == NULL)
        return r1_error__set(R1_ERR_BACKEND, "vulkan: the %s pipeline failed to build", name);
    VkShaderModuleCreateInfo module_info = {
        .sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO,
        .codeSize = bytes,
        .pCode = code,
    };
    VkShaderModule module;
    if (dev->vk.vkCreateShaderModule(dev->device, &module_info, NULL, &module) != VK_SUCCESS) {
        dev->pipe_failed[pipe] = 1;
        return r1_error__set(R1_ERR_BACKEND, "vulkan: vkCreateShaderModule failed (%s)", name);
    }
    VkSpecializationMapEntry entry = {.constantID = 0, .offset = 0, .size = sizeof(uint32_t)};
    VkSpecializationInfo spec = {
        .mapEntryCount = 1,
        .pMapEntries = &entry,
        .dataSize = sizeof(uint32_t),
        .pData = &dev->group_size,
    };
    VkComputePipelineCreateInfo info = {
        .sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO,
        .stage =
            {
                .sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO,
                .stage = VK_SHADER_STAGE_COMPUTE_BIT,
                .module = module,
                .pName = "main",
                .pSpecializationInfo = &spec,
            },
        .layout = dev->pipeline_layout,
    };
    VkResult res = dev->vk.vkCreateComputePipelines(dev->device, VK_NULL_HANDLE, 1, &info, NULL,
                                                    &dev->pipes[pipe]);
    dev->vk.vkDestroyShaderModule(dev->device, module, NULL);
    if (res != VK_SUCCESS) {
        dev->pipes[pipe] = VK_NULL_HANDLE;
        dev->pipe_failed[pipe] = 1;
        return r1_error__set(R1_ERR_BACKEND,
                             "vulkan: building the %s pipeline failed (VkResult %d)", name,
                             (int)res);
    }
    *out = dev->pipes[pipe];
    return R1_OK;
}

/* Workgroups for n_groups: along x up to the device's limit, the rest along y (the shaders
 * rebuild the index as x + y * groups_x). */
static void r1_vk_grid(const r1_dev *dev, uint64_t n_groups, uint32_t *gx, uint32_t *gy)
{
    uint32_t max_x = dev->props.limits.maxComputeWorkGroupCount[0];
    *gx = n_groups < max_x ? (uint32_t)(n_groups ? n_groups : 1) : max_x;
    *gy = (uint32_t)((n_groups + *gx - 1) / *gx);
    if (*gy == 0)
        *gy = 1;
}

static int r1_vk_grid_fits(const r1_dev *dev, uint64_t n_groups)
{
    uint64_t max_x = dev->props.limits.maxComputeWorkGroupCount[0];
    return (n_groups + max_x - 1) / max_x <= dev->props.limits.maxComputeWorkGroupCount[1];
}

/* Records one dispatch of pipe over bufs (R1_VK_BINDINGS of them, none NULL) with its push
 * constants. */
static r1_status r1_vk_dispatch(r1_dev *dev, int32_t pipe, r1_buf *const *bufs, const void *params,
                                size_t params_bytes, uint32_t gx, uint32_t gy, uint32_t gz)
{
    pthread_mutex_lock(&dev->mu);
    VkPipeline pipeline = VK_NULL_HANDLE;
    r1_vk_frame *f = NULL;
    r1_status st = r1_vk_pipeline(dev, pipe, &pipeline);
    if (st == R1_OK)
        st = r1_vk_frame_begin(dev, &f);
    if (st == R1_OK && f->n_sets == R1_VK_SETS_PER_FRAME)
        st = r1_error__set(R1_ERR_BACKEND, "vulkan: more than %d ops in one submit",
                           R1_VK_SETS_PER_FRAME);
    VkDescriptorSet set = VK_NULL_HANDLE;
    if (st == R1_OK) {
        VkDescriptorSetAllocateInfo alloc = {
            .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO,
            .descriptorPool = f->pool,
            .descriptorSetCount = 1,
            .pSetLayouts = &dev->set_layout,
        };
        if (dev->vk.vkAllocateDescriptorSets(dev->device, &alloc, &set) != VK_SUCCESS)
            st = r1_error__set(R1_ERR_BACKEND, "vulkan: vkAllocateDescriptorSets failed");
        else
            f->n_sets++;
    }
    if (st == R1_OK) {
        VkDescriptorBufferInfo infos[R1_VK_BINDINGS];
        VkWriteDescriptorSet writes[R1_VK_BINDINGS];
        for (uint32_t i = 0; i < R1_VK_BINDINGS; i++) {
            infos[i] = (VkDescriptorBufferInfo){
                .buffer = bufs[i]->buffer, .offset = 0, .range = VK_WHOLE_SIZE};
            writes[i] = (VkWriteDescriptorSet){
                .sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET,
                .dstSet = set,
                .dstBinding = i,
                .descriptorCount = 1,
                .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
                .pBufferInfo = &infos[i],
            };
        }
        dev->vk.vkUpdateDescriptorSets(dev->device, R1_VK_BINDINGS, writes, 0, NULL);
        r1_vk_order(dev, f);
        dev->vk.vkCmdBindPipeline(f->cmd, VK_PIPELINE_BIND_POINT_COMPUTE, pipeline);
        dev->vk.vkCmdBindDescriptorSets(f->cmd, VK_PIPELINE_BIND_POINT_COMPUTE,
                                        dev->pipeline_layout, 0, 1, &set, 0, NULL);
        dev->vk.vkCmdPushConstants(f->cmd, dev->pipeline_layout, VK_SHADER_STAGE_COMPUTE_BIT, 0,
                                   (uint32_t)params_bytes, params);
        dev->vk.vkCmdDispatch(f->cmd, gx, gy, gz);
    }
    pthread_mutex_unlock(&dev->mu);
    return st;
}

/* Why op cannot run here, or NULL when it can. Buffers are not looked at (supports() is asked
 * before the core places anything). */
static const char *r1_vk_matmul_refusal(const r1_dev *dev, const r1_op *op)
{
    if (op->n_src < 2)
        return "a matrix product takes two sources";
    const r1_dtensor *x = &op->src[0], *w = &op->src[1], *y = &op->dst;
    if (x->dtype != R1_DTYPE_F32 || y->dtype != R1_DTYPE_F32)
        return "activations must be float32";
    if (w->dtype < 0 || w->dtype >= R1_DTYPE_COUNT || r1_dtype__traits(w->dtype) == NULL)
        return "unknown weight type";
    if (w->n_dims != 2 || x->n_dims != 2 || y->n_dims != 2)
        return "matrix products take 2-d tensors";
    const int64_t rows = w->shape[0], cols = w->shape[1], T = x->shape[0];
    if (rows <= 0 || cols <= 0 || T <= 0 || x->shape[1] != cols || y->shape[0] != T ||
        y->shape[1] != rows)
        return "shapes do not match";
    size_t row_bytes = r1_dtype__row_bytes(w->dtype, cols);
    if (row_bytes == 0)
        return "the row length is not a whole number of blocks";
    /* The shader addresses with 32-bit byte offsets and one descriptor per tensor. */
    uint64_t range = dev->props.limits.maxStorageBufferRange;
    uint64_t w_bytes = (uint64_t)rows * row_bytes + w->offset;
    uint64_t x_floats = (uint64_t)T * (uint64_t)cols + x->offset / 4;
    uint64_t y_floats = (uint64_t)T * (uint64_t)rows + y->offset / 4;
    if (w_bytes > range || w_bytes > UINT32_MAX || 4 * x_floats > range || 4 * y_floats > range)
        return "a tensor exceeds the device's storage buffer range";
    uint64_t groups_z = ((uint64_t)T + R1_VK_TOKENS_PER_GROUP - 1) / R1_VK_TOKENS_PER_GROUP;
    if (groups_z > dev->props.limits.maxComputeWorkGroupCount[2])
        return "too many tokens in one product";
    return NULL;
}

/* Float32 spans the layer shaders address: 32-bit float indices within one descriptor. */
static int r1_vk_floats_fit(const r1_dev *dev, uint64_t floats, size_t offset)
{
    uint64_t end = floats + offset / 4;
    return end <= UINT32_MAX / 4 && 4 * end <= dev->props.limits.maxStorageBufferRange;
}

static uint64_t r1_vk_rows_span(int64_t n_rows, int64_t stride, int64_t n)
{
    return (uint64_t)(n_rows - 1) * (uint64_t)(stride > 0 ? stride : n) + (uint64_t)n;
}

static const char *r1_vk_rows_refusal(const r1_dev *dev, const r1_op *op, int32_t n_src)
{
    const r1_op_rows_params *p = op->params;
    if (p == NULL || op->n_src != n_src || !r1_backend__f32_op(op))
        return "float32 rows with their parameters";
    if (p->n_rows <= 0 || p->n <= 0 || p->x_stride < 0 || p->b_stride < 0 || p->y_stride < 0 ||
        (p->x_stride > 0 && p->x_stride < p->n) || (p->b_stride > 0 && p->b_stride < p->n) ||
        (p->y_stride > 0 && p->y_stride < p->n))
        return "bad row shape";
    if (!r1_vk_floats_fit(dev, r1_vk_rows_span(p->n_rows, p->x_stride, p->n), op->src[0].offset) ||
        !r1_vk_floats_fit(dev, r1_vk_rows_span(p->n_rows, p->b_stride, p->n), op->src[1].offset) ||
        !r1_vk_floats_fit(dev, r1_vk_rows_span(p->n_rows, p->y_stride, p->n), op->dst.offset) ||
        !r1_vk_floats_fit(dev, (uint64_t)p->n_rows * (uint64_t)p->n, 0))
        return "rows exceed the device's storage buffer range";
    return NULL;
}

static const char *r1_vk_mla_refusal(const r1_dev *dev, const r1_op *op)
{
    r1_mla_shape m;
    if (!r1_backend__mla_shape_of(op, &m) || op->n_src != 3)
        return "attention takes q, the latent cache and kv_b_proj";
    const r1_dtensor *w = &op->src[2];
    if (op->src[0].dtype != R1_DTYPE_F32 || op->src[1].dtype != R1_DTYPE_F32 ||
        op->dst.dtype != R1_DTYPE_F32 || w->dtype < 0 || w->dtype >= R1_DTYPE_COUNT ||
        r1_dtype__traits(w->dtype) == NULL)
        return "float32 activations and a known kv_b_proj type";
    if (m.H <= 0 || m.dn <= 0 || m.dr < 0 || m.dv <= 0 || m.rkv <= 0 || m.n_keys <= 0 ||
        !(m.scale > 0) || w->n_dims != 2 || w->shape[0] != m.H * (m.dn + m.dv) ||
        w->shape[1] != m.rkv)
        return "kv_b_proj does not match the heads";
    if (m.rkv + m.dr > 1024) /* MAX_LATENT in shaders/mla.comp */
        return "a latent row longer than 1024";
    size_t row_bytes = r1_dtype__row_bytes(w->dtype, m.rkv);
    uint64_t w_bytes = (uint64_t)w->shape[0] * row_bytes + w->offset;
    if (row_bytes == 0 || w_bytes > UINT32_MAX || w_bytes > dev->props.limits.maxStorageBufferRange)
        return "kv_b_proj exceeds the device's storage buffer range";
    if (!r1_vk_floats_fit(dev, (uint64_t)(m.n_tokens * m.H * (m.dn + m.dr)), op->src[0].offset) ||
        !r1_vk_floats_fit(dev, (uint64_t)m.n_keys * (uint64_t)(m.rkv + m.dr), op->src[1].offset) ||
        !r1_vk_floats_fit(dev, (uint64_t)(m.n_tokens * m.H * m.dv), op->dst.offset))
        return "the latent cache exceeds the device's storage buffer range";
    if ((uint64_t)m.H > dev->props.limits.maxComputeWorkGroupCount[0])
        return "too many heads";
    if ((uint64_t)m.n_tokens > dev->props.limits.maxComputeWorkGroupCount[1])
        return "too many queries in one chunk";
    return NULL;
}

static const char *r1_vk_router_refusal(const r1_dev *dev, const r1_op *op)
{
    const r1_op_router_params *p = op->params;
    if (p == NULL || (op->n_src != 1 && op->n_src != 2) || !r1_backend__f32_op(op))
        return "routing takes float32 logits and an optional bias";
    if (!dev->has_f64)
        return "routing needs shaderFloat64";
    const int64_t E = p->n_experts, g = p->n_group > 0 ? p->n_group : 1;
    /* The shader's fixed tables (MAX_EXPERTS, MAX_GROUPS, MAX_TOPK), and lib/model/router.c's rule
     * that the kept groups can supply top_k experts. */
    if (p->n_rows <= 0 || E <= 0 || E > 1024 || g > 64 || E % g != 0 || p->top_k <= 0 ||
        p->top_k > 64 || p->top_k > E || p->topk_group < 1 || p->topk_group > g ||
        p->topk_method < 0 || p->topk_method > 2 || p->scoring_func < 0 || p->scoring_func > 1)
        return "a routing configuration outside the shader's tables";
    if (p->topk_method != 0 && g > 1 && p->topk_group * (E / g) < p->top_k)
        return "the kept groups cannot supply top_k experts";
    if (!r1_vk_floats_fit(dev, (uint64_t)(p->n_rows * E), op->src[0].offset) ||
        !r1_vk_floats_fit(dev, (uint64_t)(p->n_rows * 2 * p->top_k), op->dst.offset) ||
        !r1_vk_grid_fits(dev, (uint64_t)p->n_rows))
        return "too many tokens";
    return NULL;
}

static const char *r1_vk_refusal(const r1_dev *dev, const r1_op *op)
{
    /* The shaders read weights in the file's rows; another layout is some other backend's. */
    for (int32_t i = 0; i < op->n_src && i < R1_OP_MAX_SRC; i++)
        if (op->src[i].layout != 0)
            return "a weight in a layout other than rows";
    switch (op->kind) {
    case R1_OP_MATMUL: return r1_vk_matmul_refusal(dev, op);
    case R1_OP_MLA_DECODE:
    case R1_OP_MLA_PREFILL: return r1_vk_mla_refusal(dev, op);
    case R1_OP_RMSNORM: {
        const char *why = r1_vk_rows_refusal(dev, op, 2);
        const r1_op_rows_params *p = op->params;
        if (why == NULL && !r1_vk_grid_fits(dev, (uint64_t)p->n_rows))
            why = "too many rows";
        return why;
    }
    case R1_OP_SWIGLU: {
        const char *why = r1_vk_rows_refusal(dev, op, 2);
        const r1_op_rows_params *p = op->params;
        if (why == NULL &&
            !r1_vk_grid_fits(dev, (uint64_t)(p->n_rows * p->n) / dev->group_size + 1))
            why = "too many elements";
        return why;
    }
    case R1_OP_MOE_COMBINE: {
        const char *why = r1_backend__moe_combine_refusal(op);
        if (why != NULL)
            return why;
        const r1_op_rows_params *p = op->params;
        if (!r1_vk_floats_fit(dev, (uint64_t)(op->dst.shape[0] * p->n), op->dst.offset) ||
            !r1_vk_floats_fit(dev, (uint64_t)(p->n_rows * p->n), op->src[0].offset) ||
            !r1_vk_grid_fits(dev, (uint64_t)(p->n_rows * p->n) / dev->group_size + 1))
            return "rows exceed the device's storage buffer range";
        return NULL;
    }
    case R1_OP_ROPE: {
        const char *why = r1_backend__rope_refusal(op);
        if (why != NULL)
            return why;
        const r1_op_rope_params *p = op->params;
        uint64_t span = (uint64_t)(p->n_rows - 1) * (uint64_t)p->row_stride +
                        (uint64_t)(p->n_vecs - 1) * (uint64_t)p->vec_stride +
                        (uint64_t)(2 * p->n_pairs);
        uint64_t pairs = (uint64_t)p->n_rows * (uint64_t)p->n_vecs * (uint64_t)p->n_pairs;
        if (!r1_vk_floats_fit(dev, span, op->dst.offset) || !r1_vk_floats_fit(dev, pairs, 0) ||
            !r1_vk_floats_fit(dev, (uint64_t)(p->n_rows * 2 * p->n_pairs), op->src[0].offset) ||
            !r1_vk_grid_fits(dev, pairs / dev->group_size + 1))
            return "rotary operands exceed the device's storage buffer range";
        return NULL;
    }
    case R1_OP_SOFTMAX: {
        const r1_op_softmax_params *p = op->params;
        if (p == NULL || op->n_src != 0 || op->dst.dtype != R1_DTYPE_F32)
            return "softmax takes float32 rows";
        if (p->n_rows <= 0 || p->n <= 0 || p->causal_base < 0 || p->causal_period < 0 ||
            p->causal_base > UINT32_MAX / 2 || p->causal_period > UINT32_MAX / 2)
            return "bad softmax shape";
        if (!r1_vk_floats_fit(dev, (uint64_t)p->n_rows * (uint64_t)p->n, op->dst.offset) ||
            !r1_vk_grid_fits(dev, (uint64_t)p->n_rows))
            return "rows exceed the device's storage buffer range";
        return NULL;
    }
    case R1_OP_ROUTER: return r1_vk_router_refusal(dev, op);
    default: return "an op kind this backend does not implement";
    }
}

static int32_t vk_supports(r1_dev *dev, const r1_op *op)
{
    if (dev == NULL || op == NULL)
        return 0;
    return r1_vk_refusal(dev, op) == NULL;
}

/* An operand's buffer holds floats floats from its offset, which is float-aligned. */
static r1_status r1_vk_operand(const r1_dtensor *t, uint64_t floats, const char *what)
{
    if (t->buf == NULL)
        return r1_error__set(R1_ERR_INVALID_ARG, "vulkan: %s has no buffer", what);
    if (t->offset % 4 != 0)
        return r1_error__set(R1_ERR_INVALID_ARG, "vulkan: %s is not 4-byte aligned", what);
    return r1_vk_check_range(t->buf, t->offset, (size_t)floats * 4, what);
}

static r1_status r1_vk_run_matmul(r1_dev *dev, const r1_op *op)
{
    const r1_dtensor *x = &op->src[0], *w = &op->src[1], *y = &op->dst;
    const int fp8 = r1_dtype__traits(w->dtype)->has_block_scale;
    if (x->buf == NULL || w->buf == NULL || y->buf == NULL || (fp8 && w->scale_buf == NULL))
        return r1_error__set(R1_ERR_INVALID_ARG, "vulkan: a matmul operand has no buffer");
    if ((x->offset | y->offset | (fp8 ? w->scale_offset : 0)) % 4 != 0)
        return r1_error__set(R1_ERR_INVALID_ARG, "vulkan: float operands must be 4-byte aligned");
    const int64_t rows = w->shape[0], cols = w->shape[1], T = x->shape[0];
    const size_t row_bytes = r1_dtype__row_bytes(w->dtype, cols);
    const int64_t scale_cols = r1_fp8__scale_blocks(cols);
    const int64_t scale_rows = r1_fp8__scale_blocks(rows);
    r1_status st = r1_vk_check_range(w->buf, w->offset, (size_t)rows * row_bytes, "matmul weight");
    if (st == R1_OK)
        st = r1_vk_check_range(x->buf, x->offset, (size_t)(T * cols) * 4, "matmul input");
    if (st == R1_OK)
        st = r1_vk_check_range(y->buf, y->offset, (size_t)(T * rows) * 4, "matmul output");
    if (st == R1_OK && fp8)
        st = r1_vk_check_range(w->scale_buf, w->scale_offset, (size_t)(scale_rows * scale_cols) * 4,
                               "matmul scale");
    if (st != R1_OK)
        return st;
    uint32_t groups_x = 0, groups_y = 0;
    r1_vk_grid(dev, (uint64_t)rows, &groups_x, &groups_y);
    uint32_t groups_z = (uint32_t)((T + R1_VK_TOKENS_PER_GROUP - 1) / R1_VK_TOKENS_PER_GROUP);
    r1_vk_matmul_params params = {
        .rows = (uint32_t)rows,
        .cols = (uint32_t)cols,
        .n_tokens = (uint32_t)T,
        .row_bytes = (uint32_t)row_bytes,
        .w_offset = (uint32_t)w->offset,
        .s_offset = (uint32_t)(fp8 ? w->scale_offset / 4 : 0),
        .scale_cols = (uint32_t)scale_cols,
        .x_offset = (uint32_t)(x->offset / 4),
        .y_offset = (uint32_t)(y->offset / 4),
        .groups_x = groups_x,
    };
    /* Types without block scales bind the weights again in the unused scale slot. */
    r1_buf *bufs[R1_VK_BINDINGS] = {w->buf, fp8 ? w->scale_buf : w->buf, x->buf, y->buf, y->buf};
    return r1_vk_dispatch(dev, R1_VK_P_MATMUL + w->dtype, bufs, &params, sizeof params, groups_x,
                          groups_y, groups_z);
}

/* The push constants of shaders/mla.comp. */
typedef struct r1_vk_mla_params {
    uint32_t n_heads, dn, dr, dv, rkv, n_keys, n_tokens, row_bytes, w_offset, s_offset;
    uint32_t scale_cols, q_offset, lat_offset, o_offset;
    float scale;
} r1_vk_mla_params;

/* Decode and prefill attention: one workgroup per head and query. */
static r1_status r1_vk_run_mla(r1_dev *dev, const r1_op *op)
{
    r1_mla_shape m;
    if (!r1_backend__mla_shape_of(op, &m)) /* refused before this; the compiler cannot know */
        return r1_error__set(R1_ERR_INVALID_ARG, "vulkan: attention without parameters");
    const r1_dtensor *w = &op->src[2];
    const int fp8 = r1_dtype__traits(w->dtype)->has_block_scale;
    const int64_t dl = m.rkv + m.dr;
    const size_t row_bytes = r1_dtype__row_bytes(w->dtype, m.rkv);
    const int64_t scale_cols = r1_fp8__scale_blocks(m.rkv);
    const int64_t scale_rows = r1_fp8__scale_blocks(w->shape[0]);
    r1_status st =
        r1_vk_operand(&op->src[0], (uint64_t)(m.n_tokens * m.H * (m.dn + m.dr)), "mla query");
    if (st == R1_OK)
        st = r1_vk_operand(&op->src[1], (uint64_t)(m.n_keys * dl), "mla latent cache");
    if (st == R1_OK)
        st = r1_vk_operand(&op->dst, (uint64_t)(m.n_tokens * m.H * m.dv), "mla output");
    if (st == R1_OK && w->buf == NULL)
        st = r1_error__set(R1_ERR_INVALID_ARG, "vulkan: kv_b_proj has no buffer");
    if (st == R1_OK)
        st = r1_vk_check_range(w->buf, w->offset, (size_t)w->shape[0] * row_bytes, "kv_b_proj");
    if (st == R1_OK && fp8 && (w->scale_buf == NULL || w->scale_offset % 4 != 0))
        st = r1_error__set(R1_ERR_INVALID_ARG, "vulkan: fp8 kv_b_proj without aligned scales");
    if (st == R1_OK && fp8)
        st = r1_vk_check_range(w->scale_buf, w->scale_offset, (size_t)(scale_rows * scale_cols) * 4,
                               "kv_b_proj scale");
    if (st != R1_OK)
        return st;
    r1_vk_mla_params params = {
        .n_heads = (uint32_t)m.H,
        .dn = (uint32_t)m.dn,
        .dr = (uint32_t)m.dr,
        .dv = (uint32_t)m.dv,
        .rkv = (uint32_t)m.rkv,
        .n_keys = (uint32_t)m.n_keys,
        .n_tokens = (uint32_t)m.n_tokens,
        .row_bytes = (uint32_t)row_bytes,
        .w_offset = (uint32_t)w->offset,
        .s_offset = (uint32_t)(fp8 ? w->scale_offset / 4 : 0),
        .scale_cols = (uint32_t)scale_cols,
        .q_offset = (uint32_t)(op->src[0].offset / 4),
        .lat_offset = (uint32_t)(op->src[1].offset / 4),
        .o_offset = (uint32_t)(op->dst.offset / 4),
        .scale = (float)m.scale,
    };
    r1_buf *bufs[R1_VK_BINDINGS] = {w->buf, fp8 ? w->scale_buf : w->buf, op->src[0].buf,
                                    op->src[1].buf, op->dst.buf};
    return r1_vk_dispatch(dev, R1_VK_P_MLA + w->dtype, bufs, &params, sizeof params, (uint32_t)m.H,
                          (uint32_t)m.n_tokens, 1);
}

typedef struct r1_vk_rmsnorm_params {
    uint32_t n_rows, n, x_stride, y_stride, x_offset, g_offset, y_offset, groups_x;
    float eps;
} r1_vk_rmsnorm_params;

static r1_status r1_vk_run_rmsnorm(r1_dev *dev, const r1_op *op)
{
    const r1_op_rows_params *p = op->params;
    const int64_t xs = p->x_stride > 0 ? p->x_stride : p->n;
    const int64_t ys = p->y_stride > 0 ? p->y_stride : p->n;
    r1_status st = r1_vk_operand(&op->src[0], r1_vk_rows_span(p->n_rows, xs, p->n), "norm input");
    if (st == R1_OK)
        st = r1_vk_operand(&op->src[1], (uint64_t)p->n, "norm gain");
    if (st == R1_OK)
        st = r1_vk_operand(&op->dst, r1_vk_rows_span(p->n_rows, ys, p->n), "norm output");
    if (st != R1_OK)
        return st;
    uint32_t gx = 0, gy = 0;
    r1_vk_grid(dev, (uint64_t)p->n_rows, &gx, &gy);
    r1_vk_rmsnorm_params params = {
        .n_rows = (uint32_t)p->n_rows,
        .n = (uint32_t)p->n,
        .x_stride = (uint32_t)xs,
        .y_stride = (uint32_t)ys,
        .x_offset = (uint32_t)(op->src[0].offset / 4),
        .g_offset = (uint32_t)(op->src[1].offset / 4),
        .y_offset = (uint32_t)(op->dst.offset / 4),
        .groups_x = gx,
        .eps = (float)p->eps,
    };
    r1_buf *bufs[R1_VK_BINDINGS] = {op->src[0].buf, op->src[1].buf, op->dst.buf, op->dst.buf,
                                    op->dst.buf};
    return r1_vk_dispatch(dev, R1_VK_P_RMSNORM, bufs, &params, sizeof params, gx, gy, 1);
}

typedef struct r1_vk_rope_params {
    uint32_t n_rows, n_vecs, row_stride, vec_stride, n_pairs, x_offset, cs_offset, groups_x;
} r1_vk_rope_params;

static r1_status r1_vk_run_rope(r1_dev *dev, const r1_op *op)
{
    const r1_op_rope_params *p = op->params;
    const uint64_t span = (uint64_t)(p->n_rows - 1) * (uint64_t)p->row_stride +
                          (uint64_t)(p->n_vecs - 1) * (uint64_t)p->vec_stride +
                          (uint64_t)(2 * p->n_pairs);
    r1_status st = r1_vk_operand(&op->dst, span, "rotary vectors");
    if (st == R1_OK)
        st = r1_vk_operand(&op->src[0], (uint64_t)(p->n_rows * 2 * p->n_pairs), "rotary tables");
    if (st != R1_OK)
        return st;
    const uint64_t pairs = (uint64_t)p->n_rows * (uint64_t)p->n_vecs * (uint64_t)p->n_pairs;
    uint32_t gx = 0, gy = 0;
    r1_vk_grid(dev, (pairs + dev->group_size - 1) / dev->group_size, &gx, &gy);
    r1_vk_rope_params params = {
        .n_rows = (uint32_t)p->n_rows,
        .n_vecs = (uint32_t)p->n_vecs,
        .row_stride = (uint32_t)p->row_stride,
        .vec_stride = (uint32_t)p->vec_stride,
        .n_pairs = (uint32_t)p->n_pairs,
        .x_offset = (uint32_t)(op->dst.offset / 4),
        .cs_offset = (uint32_t)(op->src[0].offset / 4),
        .groups_x = gx,
    };
    r1_buf *bufs[R1_VK_BINDINGS] = {op->dst.buf, op->src[0].buf, op->dst.buf, op->dst.buf,
                                    op->dst.buf};
    return r1_vk_dispatch(dev, R1_VK_P_ROPE, bufs, &params, sizeof params, gx, gy, 1);
}

typedef struct r1_vk_softmax_params {
    uint32_t n_rows, n, causal_base, causal_period, x_offset, groups_x;
    float scale;
} r1_vk_softmax_params;

static r1_status r1_vk_run_softmax(r1_dev *dev, const r1_op *op)
{
    const r1_op_softmax_params *p = op->params;
    r1_status st = r1_vk_operand(&op->dst, (uint64_t)(p->n_rows * p->n), "softmax rows");
    if (st != R1_OK)
        return st;
    uint32_t gx = 0, gy = 0;
    r1_vk_grid(dev, (uint64_t)p->n_rows, &gx, &gy);
    r1_vk_softmax_params params = {
        .n_rows = (uint32_t)p->n_rows,
        .n = (uint32_t)p->n,
        .causal_base = (uint32_t)p->causal_base,
        .causal_period = (uint32_t)p->causal_period,
        .x_offset = (uint32_t)(op->dst.offset / 4),
        .groups_x = gx,
        .scale = (float)p->scale,
    };
    r1_buf *bufs[R1_VK_BINDINGS] = {op->dst.buf, op->dst.buf, op->dst.buf, op->dst.buf,
                                    op->dst.buf};
    return r1_vk_dispatch(dev, R1_VK_P_SOFTMAX, bufs, &params, sizeof params, gx, gy, 1);
}

typedef struct r1_vk_swiglu_params {
    uint32_t n_rows, n, a_stride, b_stride, y_stride, a_offset, b_offset, y_offset, groups_x;
} r1_vk_swiglu_params;

static r1_status r1_vk_run_swiglu(r1_dev *dev, const r1_op *op)
{
    const r1_op_rows_params *p = op->params;
    const int64_t as = p->x_stride > 0 ? p->x_stride : p->n;
    const int64_t bs = p->b_stride > 0 ? p->b_stride : p->n;
    const int64_t ys = p->y_stride > 0 ? p->y_stride : p->n;
    r1_status st = r1_vk_operand(&op->src[0], r1_vk_rows_span(p->n_rows, as, p->n), "swiglu gate");
    if (st == R1_OK)
        st = r1_vk_operand(&op->src[1], r1_vk_rows_span(p->n_rows, bs, p->n), "swiglu up");
    if (st == R1_OK)
        st = r1_vk_operand(&op->dst, r1_vk_rows_span(p->n_rows, ys, p->n), "swiglu output");
    if (st != R1_OK)
        return st;
    const uint64_t n = (uint64_t)p->n_rows * (uint64_t)p->n;
    uint32_t gx = 0, gy = 0;
    r1_vk_grid(dev, (n + dev->group_size - 1) / dev->group_size, &gx, &gy);
    r1_vk_swiglu_params params = {
        .n_rows = (uint32_t)p->n_rows,
        .n = (uint32_t)p->n,
        .a_stride = (uint32_t)as,
        .b_stride = (uint32_t)bs,
        .y_stride = (uint32_t)ys,
        .a_offset = (uint32_t)(op->src[0].offset / 4),
        .b_offset = (uint32_t)(op->src[1].offset / 4),
        .y_offset = (uint32_t)(op->dst.offset / 4),
        .groups_x = gx,
    };
    r1_buf *bufs[R1_VK_BINDINGS] = {op->src[0].buf, op->src[1].buf, op->dst.buf, op->dst.buf,
                                    op->dst.buf};
    return r1_vk_dispatch(dev, R1_VK_P_SWIGLU, bufs, &params, sizeof params, gx, gy, 1);
}

/* The push constants of shaders/router.comp (std430: the double at a multiple of 8). */
typedef struct r1_vk_router_params {
    uint32_t n_rows, n_experts, top_k, n_group, topk_group;
    uint32_t topk_method, scoring_func, norm_topk_prob, use_bias;
    uint32_t u_offset, bias_offset, out_offset, groups_x;
    float pad;
    double routed_scaling_factor;
} r1_vk_router_params;

static r1_status r1_vk_run_router(r1_dev *dev, const r1_op *op)
{
    const r1_op_router_params *p = op->params;
    const int use_bias = op->n_src > 1;
    r1_status st = r1_vk_operand(&op->src[0], (uint64_t)(p->n_rows * p->n_experts), "logits");
    if (st == R1_OK && use_bias)
        st = r1_vk_operand(&op->src[1], (uint64_t)p->n_experts, "routing bias");
    if (st == R1_OK)
        st = r1_vk_operand(&op->dst, (uint64_t)(p->n_rows * 2 * p->top_k), "routing output");
    if (st != R1_OK)
        return st;
    uint32_t gx = 0, gy = 0;
    r1_vk_grid(dev, (uint64_t)p->n_rows, &gx, &gy);
    r1_vk_router_params params = {
        .n_rows = (uint32_t)p->n_rows,
        .n_experts = (uint32_t)p->n_experts,
        .top_k = (uint32_t)p->top_k,
        .n_group = (uint32_t)p->n_group,
        .topk_group = (uint32_t)p->topk_group,
        .topk_method = (uint32_t)p->topk_method,
        .scoring_func = (uint32_t)p->scoring_func,
        .norm_topk_prob = p->norm_topk_prob != 0,
        .use_bias = (uint32_t)use_bias,
        .u_offset = (uint32_t)(op->src[0].offset / 4),
        .bias_offset = use_bias ? (uint32_t)(op->src[1].offset / 4) : 0,
        .out_offset = (uint32_t)(op->dst.offset / 4),
        .groups_x = gx,
        .routed_scaling_factor = p->routed_scaling_factor,
    };
    r1_buf *bias = use_bias ? op->src[1].buf : op->src[0].buf;
    r1_buf *bufs[R1_VK_BINDINGS] = {op->src[0].buf, bias, op->dst.buf, op->dst.buf, op->dst.buf};
    return r1_vk_dispatch(dev, R1_VK_P_ROUTER, bufs, &params, sizeof params, gx, gy, 1);
}

typedef struct r1_vk_combine_params {
    uint32_t n_rows, n, n_dst_rows, scatter, dst_offset, src_offset, w_offset, rows_offset;
    uint32_t groups_x;
} r1_vk_combine_params;

static r1_status r1_vk_run_combine(r1_dev *dev, const r1_op *op)
{
    const r1_op_rows_params *p = op->params;
    const int scatter = op->n_src == 3;
    const int64_t n_dst = op->dst.shape[0];
    if (!scatter && p->n_rows > n_dst)
        return r1_error__set(R1_ERR_OUT_OF_RANGE, "vulkan: %lld rows into %lld",
                             (long long)p->n_rows, (long long)n_dst);
    r1_status st = r1_vk_operand(&op->dst, (uint64_t)(n_dst * p->n), "combine output");
    if (st == R1_OK)
        st = r1_vk_operand(&op->src[0], (uint64_t)(p->n_rows * p->n), "combine input");
    if (st == R1_OK && scatter)
        st = r1_vk_operand(&op->src[1], (uint64_t)p->n_rows, "combine weights");
    if (st == R1_OK && scatter)
        st = r1_vk_operand(&op->src[2], (uint64_t)p->n_rows, "combine rows");
    if (st != R1_OK)
        return st;
    const uint64_t n = (uint64_t)p->n_rows * (uint64_t)p->n;
    uint32_t gx = 0, gy = 0;
    r1_vk_grid(dev, (n + dev->group_size - 1) / dev->group_size, &gx, &gy);
    r1_vk_combine_params params = {
        .n_rows = (uint32_t)p->n_rows,
        .n = (uint32_t)p->n,
        .n_dst_rows = (uint32_t)n_dst,
        .scatter = (uint32_t)scatter,
        .dst_offset = (uint32_t)(op->dst.offset / 4),
        .src_offset = (uint32_t)(op->src[0].offset / 4),
        .w_offset = scatter ? (uint32_t)(op->src[1].offset / 4) : 0,
        .rows_offset = scatter ? (uint32_t)(op->src[2].offset / 4) : 0,
        .groups_x = gx,
    };
    r1_buf *src = op->src[0].buf;
    r1_buf *bufs[R1_VK_BINDINGS] = {op->dst.buf, src, scatter ? op->src[1].buf : src,
                                    scatter ? op->src[2].buf : src, src};
    return r1_vk_dispatch(dev, R1_VK_P_COMBINE, bufs, &params, sizeof params, gx, gy, 1);
}

static r1_status vk_run(r1_dev *dev, const r1_op *op)
{
    if (dev == NULL || op == NULL)
        return r1_error__set(R1_ERR_INVALID_ARG, "vulkan: run needs a device and an op");
    const char *why = r1_vk_refusal(dev, op);
    if (why != NULL)
        return r1_error__set(R1_ERR_UNSUPPORTED, "vulkan: %s", why);
    switch (op->kind) {
    case R1_OP_MATMUL: return r1_vk_run_matmul(dev, op);
    case R1_OP_MLA_DECODE:
    case R1_OP_MLA_PREFILL: return r1_vk_run_mla(dev, op);
    case R1_OP_RMSNORM: return r1_vk_run_rmsnorm(dev, op);
    case R1_OP_ROPE: return r1_vk_run_rope(dev, op);
    case R1_OP_SOFTMAX: return r1_vk_run_softmax(dev, op);
    case R1_OP_SWIGLU: return r1_vk_run_swiglu(dev, op);
    case R1_OP_ROUTER: return r1_vk_run_router(dev, op);
    case R1_OP_MOE_COMBINE: return r1_vk_run_combine(dev, op);
    default: return r1_error__set(R1_ERR_UNSUPPORTED, "vulkan: op kind %d", (int)op->kind);
    }
}

/* ---- submission --------------------------------------------------------------------------- */

/* Submits the frame being recorded (an empty one when none is); the caller holds the lock.
 * A large upload also submits on its way, so a submit's number may be more than one above the
 * previous one the caller saw; numbers only grow. */
static r1_status r1_vk_submit_locked(r1_dev *dev, uint64_t *seq_out)
{
    r1_vk_frame *f = NULL;
    r1_status st = r1_vk_frame_begin(dev, &f); /* an empty submit still gets its number */
    if (st == R1_OK) {
        if (f->n_copies > 0) { /* make the downloads' writes visible to the host copies */
            VkMemoryBarrier barrier = {
                .sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
                .srcAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT,
                .dstAccessMask = VK_ACCESS_HOST_READ_BIT,
            };
            dev->vk.vkCmdPipelineBarrier(f->cmd, VK_PIPELINE_STAGE_TRANSFER_BIT,
                                         VK_PIPELINE_STAGE_HOST_BIT, 0, 1, &barrier, 0, NULL, 0,
                                         NULL);
        }
        f->recording = 0;
        if (dev->vk.vkEndCommandBuffer(f->cmd) != VK_SUCCESS)
            st = r1_error__set(R1_ERR_BACKEND, "vulkan: vkEndCommandBuffer failed");
    }
    uint64_t seq = dev->submitted + 1;
    if (st == R1_OK) {
        VkTimelineSemaphoreSubmitInfo timeline = {
            .sType = VK_STRUCTURE_TYPE_TIMELINE_SEMAPHORE_SUBMIT_INFO,
            .signalSemaphoreValueCount = 1,
            .pSignalSemaphoreValues = &seq,
        };
        VkSubmitInfo info = {
            .sType = VK_STRUCTURE_TYPE_SUBMIT_INFO,
            .pNext = dev->timeline != VK_NULL_HANDLE ? &timeline : NULL,
            .commandBufferCount = 1,
            .pCommandBuffers = &f->cmd,
            .signalSemaphoreCount = dev->timeline != VK_NULL_HANDLE ? 1 : 0,
            .pSignalSemaphores = &dev->timeline,
        };
        VkResult res = dev->vk.vkQueueSubmit(
            dev->queue, 1, &info, dev->timeline != VK_NULL_HANDLE ? VK_NULL_HANDLE : f->fence);
        if (res != VK_SUCCESS) {
            st = r1_error__set(R1_ERR_BACKEND, "vulkan: vkQueueSubmit failed (VkResult %d)",
                               (int)res);
            /* The frame's work is lost; its downloads will never arrive. */
            f->n_copies = 0;
        } else {
            dev->submitted = seq;
            f->seq = seq;
            dev->current = (dev->current + 1) % R1_VK_FRAMES;
        }
    }
    if (st == R1_OK && seq_out != NULL)
        *seq_out = seq;
    return st;
}

static r1_status vk_submit(r1_dev *dev, uint64_t *seq_out)
{
    if (dev == NULL)
        return r1_error__set(R1_ERR_INVALID_ARG, "vulkan: submit needs a device");
    pthread_mutex_lock(&dev->mu);
    r1_status st = r1_vk_submit_locked(dev, seq_out);
    pthread_mutex_unlock(&dev->mu);
    return st;
}

static r1_status vk_wait(r1_dev *dev, uint64_t seq)
{
    if (dev == NULL)
        return r1_error__set(R1_ERR_INVALID_ARG, "vulkan: wait needs a device");
    pthread_mutex_lock(&dev->mu);
    if (seq > dev->submitted)
        seq = dev->submitted; /* UINT64_MAX: everything submitted */
    r1_status st = r1_vk_wait_seq(dev, seq);
    if (st == R1_OK)
        r1_vk_finish_copies(dev);
    pthread_mutex_unlock(&dev->mu);
    return st;
}

static uint64_t vk_completed(r1_dev *dev)
{
    if (dev == NULL)
        return 0;
    pthread_mutex_lock(&dev->mu);
    uint64_t done = r1_vk_poll(dev);
    pthread_mutex_unlock(&dev->mu);
    return done;
}

static const r1_backend_ops r1_vulkan_ops = {
    .abi = R1_BACKEND_ABI,
    .name = "vulkan",
    .probe = vk_probe,
    .open = vk_open,
    .open_selected = vk_open_selected,
    .close = vk_close,
    .device_info = vk_device_info,
    .alloc = vk_alloc,
    .free = vk_free,
    .wrap_host = NULL,
    .upload = vk_upload,
    .download = vk_download,
    .supports = vk_supports,
    .run = vk_run,
    .submit = vk_submit,
    .wait = vk_wait,
    .completed = vk_completed,
};

const r1_backend_ops *r1_backend_vulkan__ops(void)
{
    return &r1_vulkan_ops;
}
