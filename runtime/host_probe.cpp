#include "runtime/host_probe.hpp"

#include <dlfcn.h>
#include <unistd.h>

#include <thread>

namespace llorch {
namespace {

// The few CUDA driver API entry points we need; their ABI has been stable since CUDA 4.
using cu_result = int;
using cu_device = int;
constexpr int attr_cc_major = 75; // CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR
constexpr int attr_cc_minor = 76; // CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR

struct cuda_driver {
  cu_result (*init)(unsigned) = nullptr;
  cu_result (*device_count)(int*) = nullptr;
  cu_result (*device_get)(cu_device*, int) = nullptr;
  cu_result (*device_name)(char*, int, cu_device) = nullptr;
  cu_result (*total_mem)(std::size_t*, cu_device) = nullptr;
  cu_result (*attribute)(int*, int, cu_device) = nullptr;

  bool load(void* lib) {
    init = reinterpret_cast<decltype(init)>(dlsym(lib, "cuInit"));
    device_count = reinterpret_cast<decltype(device_count)>(dlsym(lib, "cuDeviceGetCount"));
    device_get = reinterpret_cast<decltype(device_get)>(dlsym(lib, "cuDeviceGet"));
    device_name = reinterpret_cast<decltype(device_name)>(dlsym(lib, "cuDeviceGetName"));
    total_mem = reinterpret_cast<decltype(total_mem)>(dlsym(lib, "cuDeviceTotalMem_v2"));
    attribute = reinterpret_cast<decltype(attribute)>(dlsym(lib, "cuDeviceGetAttribute"));
    return init && device_count && device_get && device_name && total_mem && attribute;
  }
};

void probe_gpus(node_capabilities& caps, std::string& note) {
  void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    note = "no CUDA driver (libcuda.so.1 not found)";
    return;
  }
  cuda_driver cu;
  int count = 0;
  if (!cu.load(lib)) {
    note = "CUDA driver lacks the expected entry points";
  } else if (auto rc = cu.init(0); rc != 0) {
    note = "cuInit failed with code " + std::to_string(rc);
  } else if (cu.device_count(&count) != 0 || count == 0) {
    note = "CUDA driver reports no GPU";
  } else {
    for (int i = 0; i < count; ++i) {
      cu_device dev = 0;
      char name[256] = {};
      std::size_t mem = 0;
      int major = 0, minor = 0;
      if (cu.device_get(&dev, i) != 0 || cu.device_name(name, sizeof(name) - 1, dev) != 0
          || cu.total_mem(&mem, dev) != 0 || cu.attribute(&major, attr_cc_major, dev) != 0
          || cu.attribute(&minor, attr_cc_minor, dev) != 0) {
        note = "CUDA driver failed to describe GPU " + std::to_string(i);
        continue;
      }
      caps.gpus.push_back({std::to_string(i), name, static_cast<std::uint64_t>(mem),
                           std::to_string(major) + "." + std::to_string(minor)});
    }
  }
  // The library stays loaded: unloading the CUDA driver after cuInit is not supported.
}

} // namespace

node_capabilities probe_host(std::string& note) {
  node_capabilities caps;
  caps.cpu_cores = static_cast<std::int32_t>(std::thread::hardware_concurrency());
  auto pages = sysconf(_SC_PHYS_PAGES);
  auto page_size = sysconf(_SC_PAGE_SIZE);
  if (pages > 0 && page_size > 0)
    caps.ram_total_bytes = static_cast<std::uint64_t>(pages) * static_cast<std::uint64_t>(page_size);
  probe_gpus(caps, note);
  return caps;
}

} // namespace llorch
