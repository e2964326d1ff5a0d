/* backend_vulkan.c: the Vulkan backend's instance, device selection and queue. */
#define VK_NO_PROTOTYPES
#include <vulkan/vulkan.h>

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "error.h"

/* The loader is opened with dlopen rather than linked, so libr1 loads on machines without
 * Vulkan and r1_backend_available("vulkan") can say why it is missing. */

static struct {
    pthread_once_t once;
    void *lib;
    char why[200];
    PFN_vkGetInstanceProcAddr get_instance_proc;
    PFN_vkCreateInstance create_instance;
    PFN_vkEnumerateInstanceVersion enumerate_instance_version;
} r1_vk = {.once = PTHREAD_ONCE_INIT};

/* Instance-level functions this file calls. */
typedef struct r1_vk_instance_fns {
    PFN_vkDestroyInstance destroy_instance;
    PFN_vkEnumeratePhysicalDevices enumerate_physical_devices;
    PFN_vkGetPhysicalDeviceProperties get_properties;
    PFN_vkGetPhysicalDeviceMemoryProperties get_memory_properties;
    PFN_vkGetPhysicalDeviceQueueFamilyProperties get_queue_families;
    PFN_vkCreateDevice create_device;
    PFN_vkGetDeviceProcAddr get_device_proc;
} r1_vk_instance_fns;

struct r1_dev {
    VkInstance instance;
    r1_vk_instance_fns fn;
    VkPhysicalDevice physical;
    VkPhysicalDeviceProperties props;
    VkDevice device;
    uint32_t queue_family;
    VkQueue queue;
    PFN_vkDestroyDevice destroy_device;
    PFN_vkDeviceWaitIdle device_wait_idle;
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
    if (r1_vk.create_instance == NULL)
        snprintf(r1_vk.why, sizeof r1_vk.why, "the Vulkan loader lacks vkCreateInstance");
}

static r1_status r1_vk_create_instance(VkInstance *out, r1_vk_instance_fns *fn)
{
    pthread_once(&r1_vk.once, r1_vk_load);
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
    VkInstanceCreateInfo info = {
        .sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO,
        .pApplicationInfo = &app,
    };
    VkResult res = r1_vk.create_instance(&info, NULL, out);
    if (res != VK_SUCCESS)
        return r1_error__set(R1_ERR_BACKEND, "vulkan: vkCreateInstance failed (VkResult %d)",
                             (int)res);
#define R1_VK_LOAD(field, name) fn->field = (PFN_##name)r1_vk.get_instance_proc(*out, #name)
    R1_VK_LOAD(destroy_instance, vkDestroyInstance);
    R1_VK_LOAD(enumerate_physical_devices, vkEnumeratePhysicalDevices);
    R1_VK_LOAD(get_properties, vkGetPhysicalDeviceProperties);
    R1_VK_LOAD(get_memory_properties, vkGetPhysicalDeviceMemoryProperties);
    R1_VK_LOAD(get_queue_families, vkGetPhysicalDeviceQueueFamilyProperties);
    R1_VK_LOAD(create_device, vkCreateDevice);
    R1_VK_LOAD(get_device_proc, vkGetDeviceProcAddr);
#undef R1_VK_LOAD
    if (!fn->destroy_instance || !fn->enumerate_physical_devices || !fn->get_properties ||
        !fn->get_memory_properties || !fn->get_queue_families || !fn->create_device ||
        !fn->get_device_proc) {
        if (fn->destroy_instance)
            fn->destroy_instance(*out, NULL);
        return r1_error__set(R1_ERR_BACKEND, "vulkan: the instance lacks core 1.0 functions");
    }
    return R1_OK;
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

enum { R1_VK_MAX_DEVICES = 16 };

static int32_t vk_probe(char *why, size_t why_len)
{
    VkInstance inst;
    r1_vk_instance_fns fn;
    if (r1_vk_create_instance(&inst, &fn) != R1_OK) {
        snprintf(why, why_len, "%s", r1_error__message());
        return 0;
    }
    VkPhysicalDevice devs[R1_VK_MAX_DEVICES];
    uint32_t n = r1_vk_devices(inst, &fn, devs, R1_VK_MAX_DEVICES);
    fn.destroy_instance(inst, NULL);
    if (n == 0)
        snprintf(why, why_len, "no Vulkan device is present");
    return (int32_t)n;
}

static void vk_close(r1_dev *dev)
{
    if (dev == NULL)
        return;
    if (dev->device != VK_NULL_HANDLE) {
        dev->device_wait_idle(dev->device);
        dev->destroy_device(dev->device, NULL);
    }
    if (dev->instance != VK_NULL_HANDLE)
        dev->fn.destroy_instance(dev->instance, NULL);
    free(dev);
}

static r1_status vk_open(r1_dev **out, int32_t index)
{
    r1_dev *dev = calloc(1, sizeof *dev);
    if (dev == NULL)
        return r1_error__set(R1_ERR_NO_MEMORY, "cannot allocate the vulkan device");
    r1_status st = r1_vk_create_instance(&dev->instance, &dev->fn);
    if (st != R1_OK) {
        free(dev);
        return st;
    }
    VkPhysicalDevice devs[R1_VK_MAX_DEVICES];
    uint32_t n = r1_vk_devices(dev->instance, &dev->fn, devs, R1_VK_MAX_DEVICES);
    if (index < 0 || (uint32_t)index >= n) {
        st = r1_error__set(n ? R1_ERR_OUT_OF_RANGE : R1_ERR_UNSUPPORTED,
                           "vulkan: device index %d requested, %u present", (int)index, n);
        goto fail;
    }
    dev->physical = devs[index];
    dev->fn.get_properties(dev->physical, &dev->props);

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
    VkDeviceCreateInfo dinfo = {
        .sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO,
        .queueCreateInfoCount = 1,
        .pQueueCreateInfos = &qinfo,
    };
    VkResult res = dev->fn.create_device(dev->physical, &dinfo, NULL, &dev->device);
    if (res != VK_SUCCESS) {
        dev->device = VK_NULL_HANDLE;
        st = r1_error__set(R1_ERR_BACKEND, "vulkan: vkCreateDevice on '%s' failed (VkResult %d)",
                           dev->props.deviceName, (int)res);
        goto fail;
    }
    dev->destroy_device =
        (PFN_vkDestroyDevice)dev->fn.get_device_proc(dev->device, "vkDestroyDevice");
    dev->device_wait_idle =
        (PFN_vkDeviceWaitIdle)dev->fn.get_device_proc(dev->device, "vkDeviceWaitIdle");
    PFN_vkGetDeviceQueue get_queue =
        (PFN_vkGetDeviceQueue)dev->fn.get_device_proc(dev->device, "vkGetDeviceQueue");
    if (!dev->destroy_device || !dev->device_wait_idle || !get_queue) {
        st = r1_error__set(R1_ERR_BACKEND, "vulkan: device lacks core 1.0 functions");
        goto fail;
    }
    get_queue(dev->device, dev->queue_family, 0, &dev->queue);
    *out = dev;
    return R1_OK;
fail:
    if (dev->device == VK_NULL_HANDLE)
        dev->destroy_device = NULL;
    if (dev->device != VK_NULL_HANDLE && dev->destroy_device == NULL) {
        /* cannot destroy without the function; leave it to process exit */
        dev->device = VK_NULL_HANDLE;
    }
    vk_close(dev);
    return st;
}

static r1_status vk_device_info(r1_dev *dev, r1_device_info *out)
{
    memset(out, 0, sizeof *out);
    snprintf(out->name, sizeof out->name, "%s", dev->props.deviceName);
    VkPhysicalDeviceMemoryProperties mem;
    dev->fn.get_memory_properties(dev->physical, &mem);
    for (uint32_t i = 0; i < mem.memoryHeapCount; i++)
        if (mem.memoryHeaps[i].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT)
            out->memory_total_bytes += mem.memoryHeaps[i].size;
    out->memory_free_bytes = out->memory_total_bytes; /* the budget extension refines this */
    out->host_shared = dev->props.deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU;
    return R1_OK;
}

/* Buffers, transfers and kernels arrive with the Vulkan compute backend (issue #7). Until then
 * the backend reports devices, and supports() sends every op to the CPU backend. */
static r1_status vk_not_yet(const char *what)
{
    return r1_error__set(R1_ERR_UNSUPPORTED, "vulkan: %s is not implemented in this release", what);
}

static r1_status vk_alloc(r1_dev *dev, size_t bytes, r1_buf **out)
{
    (void)dev, (void)bytes, (void)out;
    return vk_not_yet("buffer allocation");
}

static void vk_free(r1_dev *dev, r1_buf *buf)
{
    (void)dev, (void)buf;
}

static r1_status vk_upload(r1_dev *dev, r1_buf *dst, size_t off, const void *src, size_t n)
{
    (void)dev, (void)dst, (void)off, (void)src, (void)n;
    return vk_not_yet("upload");
}

static r1_status vk_download(r1_dev *dev, void *dst, r1_buf *src, size_t off, size_t n)
{
    (void)dev, (void)dst, (void)src, (void)off, (void)n;
    return vk_not_yet("download");
}

static int32_t vk_supports(r1_dev *dev, const r1_op *op)
{
    (void)dev, (void)op;
    return 0;
}

static r1_status vk_run(r1_dev *dev, const r1_op *op)
{
    (void)dev, (void)op;
    return vk_not_yet("running an op");
}

static r1_status vk_submit(r1_dev *dev, uint64_t *seq_out)
{
    (void)dev;
    if (seq_out != NULL)
        *seq_out = 0;
    return R1_OK;
}

static r1_status vk_wait(r1_dev *dev, uint64_t seq)
{
    (void)seq;
    return dev->device_wait_idle(dev->device) == VK_SUCCESS
               ? R1_OK
               : r1_error__set(R1_ERR_BACKEND, "vulkan: vkDeviceWaitIdle failed");
}

static uint64_t vk_completed(r1_dev *dev)
{
    (void)dev;
    return 0;
}

static const r1_backend_ops r1_vulkan_ops = {
    .abi = R1_BACKEND_ABI,
    .name = "vulkan",
    .probe = vk_probe,
    .open = vk_open,
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
