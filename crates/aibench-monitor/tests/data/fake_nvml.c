/* A stand-in for libnvidia-ml.so.1 with two GPUs and fixed readings, so that the NVML
 * binding can be tested on machines without an NVIDIA driver. Signatures follow nvml.h. */
#include <string.h>

typedef struct { unsigned int gpu; unsigned int memory; } nvmlUtilization_t;
typedef struct { unsigned long long total; unsigned long long free; unsigned long long used; } nvmlMemory_t;
typedef void *nvmlDevice_t;

static int devices[2];
static unsigned long long energy_mj = 1000000;

int nvmlInit_v2(void) { return 0; }
int nvmlShutdown(void) { return 0; }
const char *nvmlErrorString(int r) { return r == 0 ? "Success" : "Unknown Error"; }
int nvmlDeviceGetCount_v2(unsigned int *n) { *n = 2; return 0; }
int nvmlDeviceGetHandleByIndex_v2(unsigned int i, nvmlDevice_t *d) {
    if (i > 1) return 2;
    *d = &devices[i];
    return 0;
}
static int index_of(nvmlDevice_t d) { return d == &devices[1] ? 1 : 0; }
int nvmlDeviceGetName(nvmlDevice_t d, char *name, unsigned int len) {
    strncpy(name, index_of(d) ? "Fake GPU B" : "Fake GPU A", len);
    return 0;
}
int nvmlDeviceGetUUID(nvmlDevice_t d, char *uuid, unsigned int len) {
    strncpy(uuid, index_of(d) ? "GPU-0000-b" : "GPU-0000-a", len);
    return 0;
}
int nvmlDeviceGetUtilizationRates(nvmlDevice_t d, nvmlUtilization_t *u) {
    u->gpu = 75 + index_of(d);
    u->memory = 40;
    return 0;
}
int nvmlDeviceGetMemoryInfo(nvmlDevice_t d, nvmlMemory_t *m) {
    m->total = 80ULL << 30;
    m->used = 20ULL << 30;
    m->free = m->total - m->used;
    return 0;
}
int nvmlDeviceGetPowerUsage(nvmlDevice_t d, unsigned int *mw) { *mw = 250000 + 50000 * index_of(d); return 0; }
int nvmlDeviceGetTemperature(nvmlDevice_t d, int sensor, unsigned int *t) { *t = sensor == 0 ? 61 : 0; return 0; }
int nvmlDeviceGetClockInfo(nvmlDevice_t d, int type, unsigned int *mhz) {
    if (type == 1) { *mhz = 1410; return 0; }
    if (type == 2) { *mhz = 1593; return 0; }
    return 3; /* NVML_ERROR_NOT_SUPPORTED */
}
int nvmlDeviceGetTotalEnergyConsumption(nvmlDevice_t d, unsigned long long *mj) {
    energy_mj += 500; /* each reading: 0.5 J more */
    *mj = energy_mj;
    return 0;
}
