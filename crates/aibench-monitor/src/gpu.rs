//! NVIDIA GPUs through NVML, loaded at run time (`libnvidia-ml.so.1`): nothing to link, and a
//! machine without the driver just gets a note saying so.
//!
//! Series, each with a `gpu` label (the NVML index):
//!
//! | series                          | unit    |
//! |---------------------------------|---------|
//! | `gpu_utilisation_ratio`         | 0..1 of the last sample period with a kernel running |
//! | `gpu_memory_utilisation_ratio`  | 0..1 of the period with memory being read or written |
//! | `gpu_memory_used_bytes`, `gpu_memory_total_bytes` | bytes |
//! | `gpu_power_watts`               | W       |
//! | `gpu_temperature_celsius`       | °C      |
//! | `gpu_sm_clock_hertz`, `gpu_memory_clock_hertz` | Hz |
//! | `gpu_energy_joules`             | J since monitoring started (Volta and later) |
//!
//! A query a GPU does not support leaves its series out.

use std::ffi::{c_char, c_int, c_uint, c_ulonglong, c_void, CStr};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::expo::Sample;

/// Where NVML normally is.
pub const NVML_LIBRARY: &str = "libnvidia-ml.so.1";

type Device = *mut c_void;
type Ret = c_int;

const NVML_SUCCESS: Ret = 0;
const NVML_TEMPERATURE_GPU: c_int = 0;
const NVML_CLOCK_SM: c_int = 1;
const NVML_CLOCK_MEM: c_int = 2;

#[repr(C)]
#[derive(Default)]
struct Utilization {
    gpu: c_uint,
    memory: c_uint,
}

#[repr(C)]
#[derive(Default)]
struct Memory {
    total: c_ulonglong,
    free: c_ulonglong,
    used: c_ulonglong,
}

/// One GPU, as NVML names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuInfo {
    pub index: u32,
    pub name: String,
    pub uuid: String,
}

struct Api {
    shutdown: unsafe extern "C" fn() -> Ret,
    count: unsafe extern "C" fn(*mut c_uint) -> Ret,
    handle: unsafe extern "C" fn(c_uint, *mut Device) -> Ret,
    name: unsafe extern "C" fn(Device, *mut c_char, c_uint) -> Ret,
    uuid: unsafe extern "C" fn(Device, *mut c_char, c_uint) -> Ret,
    utilization: unsafe extern "C" fn(Device, *mut Utilization) -> Ret,
    memory: unsafe extern "C" fn(Device, *mut Memory) -> Ret,
    power: unsafe extern "C" fn(Device, *mut c_uint) -> Ret,
    temperature: unsafe extern "C" fn(Device, c_int, *mut c_uint) -> Ret,
    clock: unsafe extern "C" fn(Device, c_int, *mut c_uint) -> Ret,
    energy: Option<unsafe extern "C" fn(Device, *mut c_ulonglong) -> Ret>,
    error_string: Option<unsafe extern "C" fn(Ret) -> *const c_char>,
    // Last: the library must outlive the function pointers above.
    _lib: libloading::Library,
}

/// An open NVML session and the GPUs it found.
pub struct GpuSampler {
    api: Api,
    devices: Vec<(GpuInfo, Device)>,
    /// Energy counter (mJ) of each device at the first sample.
    energy_base: Vec<Option<u64>>,
}

// SAFETY: NVML is thread-safe (its documentation says every call may be made from any thread),
// and device handles are plain identifiers valid for the whole session.
unsafe impl Send for GpuSampler {}

/// One sample of all GPUs.
#[derive(Debug, Default)]
pub struct GpuSample {
    pub samples: Vec<Sample>,
    /// Sum of the power of every GPU that reports it.
    pub power_watts: Option<f64>,
}

impl GpuSampler {
    /// Open NVML from its usual place. The error is a note for the report, not a failure:
    /// "no NVIDIA driver" when the library is absent.
    pub fn open() -> Result<GpuSampler, String> {
        GpuSampler::open_library(Path::new(NVML_LIBRARY))
    }

    /// Open NVML from a given library file.
    pub fn open_library(path: &Path) -> Result<GpuSampler, String> {
        // SAFETY: loading NVML runs its (trusted, vendor) initialisers; nothing else is assumed.
        let lib = unsafe { libloading::Library::new(path) }.map_err(|e| {
            format!(
                "no NVIDIA driver: {} could not be loaded ({e}); GPUs are not sampled",
                path.display()
            )
        })?;
        // SAFETY: each symbol is looked up by its NVML name and given NVML's C signature.
        let api = unsafe { Api::bind(lib) }
            .map_err(|e| format!("NVML at {} lacks {e}; GPUs are not sampled", path.display()))?;
        let init: unsafe extern "C" fn() -> Ret = {
            // SAFETY: as above.
            let f = unsafe {
                api._lib
                    .get::<unsafe extern "C" fn() -> Ret>(b"nvmlInit_v2\0")
            }
            .map_err(|e| format!("NVML lacks nvmlInit_v2 ({e}); GPUs are not sampled"))?;
            *f
        };
        // SAFETY: nvmlInit_v2 takes no arguments.
        let r = unsafe { init() };
        if r != NVML_SUCCESS {
            return Err(format!(
                "the NVIDIA driver did not start NVML ({}); GPUs are not sampled",
                api.error(r)
            ));
        }
        let mut n: c_uint = 0;
        // SAFETY: `n` is a valid out pointer.
        let r = unsafe { (api.count)(&mut n) };
        if r != NVML_SUCCESS {
            // SAFETY: NVML was initialised above.
            unsafe { (api.shutdown)() };
            return Err(format!("NVML could not count GPUs ({})", api.error(r)));
        }
        let mut devices = Vec::new();
        for index in 0..n {
            let mut d: Device = std::ptr::null_mut();
            // SAFETY: `d` is a valid out pointer; the index is below the count.
            if unsafe { (api.handle)(index, &mut d) } != NVML_SUCCESS {
                continue;
            }
            let info = GpuInfo {
                index,
                name: api.string(api.name, d),
                uuid: api.string(api.uuid, d),
            };
            devices.push((info, d));
        }
        if devices.is_empty() {
            // SAFETY: NVML was initialised above.
            unsafe { (api.shutdown)() };
            return Err("the NVIDIA driver is loaded but reports no GPU".into());
        }
        let energy_base = vec![None; devices.len()];
        Ok(GpuSampler {
            api,
            devices,
            energy_base,
        })
    }

    pub fn gpus(&self) -> Vec<GpuInfo> {
        self.devices.iter().map(|(i, _)| i.clone()).collect()
    }

    /// One sample of every GPU.
    pub fn sample(&mut self) -> GpuSample {
        let mut out = GpuSample::default();
        let mut power_total = None::<f64>;
        for (k, (info, d)) in self.devices.iter().enumerate() {
            let d = *d;
            let idx = info.index.to_string();
            let mut push = |name: &str, v: f64| {
                out.samples
                    .push(Sample::new(name, vec![("gpu".into(), idx.clone())], v));
            };
            let mut u = Utilization::default();
            // SAFETY: valid device handle and out pointer.
            if unsafe { (self.api.utilization)(d, &mut u) } == NVML_SUCCESS {
                push("gpu_utilisation_ratio", f64::from(u.gpu) / 100.0);
                push("gpu_memory_utilisation_ratio", f64::from(u.memory) / 100.0);
            }
            let mut m = Memory::default();
            // SAFETY: valid device handle and out pointer.
            if unsafe { (self.api.memory)(d, &mut m) } == NVML_SUCCESS {
                push("gpu_memory_used_bytes", m.used as f64);
                push("gpu_memory_total_bytes", m.total as f64);
            }
            let mut mw: c_uint = 0;
            // SAFETY: valid device handle and out pointer.
            if unsafe { (self.api.power)(d, &mut mw) } == NVML_SUCCESS {
                let w = f64::from(mw) / 1000.0;
                push("gpu_power_watts", w);
                power_total = Some(power_total.unwrap_or(0.0) + w);
            }
            let mut t: c_uint = 0;
            // SAFETY: valid device handle, sensor id and out pointer.
            if unsafe { (self.api.temperature)(d, NVML_TEMPERATURE_GPU, &mut t) } == NVML_SUCCESS {
                push("gpu_temperature_celsius", f64::from(t));
            }
            for (clock, name) in [
                (NVML_CLOCK_SM, "gpu_sm_clock_hertz"),
                (NVML_CLOCK_MEM, "gpu_memory_clock_hertz"),
            ] {
                let mut mhz: c_uint = 0;
                // SAFETY: valid device handle, clock id and out pointer.
                if unsafe { (self.api.clock)(d, clock, &mut mhz) } == NVML_SUCCESS {
                    push(name, f64::from(mhz) * 1e6);
                }
            }
            if let Some(energy) = self.api.energy {
                let mut mj: c_ulonglong = 0;
                // SAFETY: valid device handle and out pointer.
                if unsafe { energy(d, &mut mj) } == NVML_SUCCESS {
                    if let Some(base) = self.energy_base.get_mut(k) {
                        let b = *base.get_or_insert(mj);
                        push("gpu_energy_joules", mj.saturating_sub(b) as f64 / 1000.0);
                    }
                }
            }
        }
        out.power_watts = power_total;
        out
    }
}

impl Drop for GpuSampler {
    fn drop(&mut self) {
        // SAFETY: the session was initialised in `open_library`; the library is still loaded.
        unsafe { (self.api.shutdown)() };
    }
}

impl Api {
    /// # Safety
    /// `lib` must be an NVML library: the symbols are given NVML's signatures.
    unsafe fn bind(lib: libloading::Library) -> Result<Api, String> {
        macro_rules! sym {
            ($name:literal) => {
                *lib.get($name)
                    .map_err(|_| String::from_utf8_lossy(&$name[..$name.len() - 1]).into_owned())?
            };
        }
        macro_rules! opt {
            ($name:literal) => {
                lib.get($name).ok().map(|s| *s)
            };
        }
        Ok(Api {
            shutdown: sym!(b"nvmlShutdown\0"),
            count: sym!(b"nvmlDeviceGetCount_v2\0"),
            handle: sym!(b"nvmlDeviceGetHandleByIndex_v2\0"),
            name: sym!(b"nvmlDeviceGetName\0"),
            uuid: sym!(b"nvmlDeviceGetUUID\0"),
            utilization: sym!(b"nvmlDeviceGetUtilizationRates\0"),
            memory: sym!(b"nvmlDeviceGetMemoryInfo\0"),
            power: sym!(b"nvmlDeviceGetPowerUsage\0"),
            temperature: sym!(b"nvmlDeviceGetTemperature\0"),
            clock: sym!(b"nvmlDeviceGetClockInfo\0"),
            energy: opt!(b"nvmlDeviceGetTotalEnergyConsumption\0"),
            error_string: opt!(b"nvmlErrorString\0"),
            _lib: lib,
        })
    }

    fn error(&self, r: Ret) -> String {
        if let Some(f) = self.error_string {
            // SAFETY: nvmlErrorString returns a static NUL-terminated string or null.
            let p = unsafe { f(r) };
            if !p.is_null() {
                // SAFETY: non-null, NUL-terminated, static.
                return unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned();
            }
        }
        format!("NVML error {r}")
    }

    fn string(
        &self,
        f: unsafe extern "C" fn(Device, *mut c_char, c_uint) -> Ret,
        d: Device,
    ) -> String {
        let mut buf = [0 as c_char; 96];
        // SAFETY: the buffer is valid for its length, which is passed; NVML NUL-terminates.
        if unsafe { f(d, buf.as_mut_ptr(), buf.len() as c_uint) } != NVML_SUCCESS {
            return String::new();
        }
        let last = buf.len() - 1;
        buf[last] = 0;
        // SAFETY: NUL-terminated within the buffer (forced above).
        unsafe { CStr::from_ptr(buf.as_ptr()) }
            .to_string_lossy()
            .into_owned()
    }
}

/// Energy from power samples `(t_s, watts)`, by the trapezoid rule, within `[from, to]` when a
/// window is given. `None` with fewer than two samples in the window.
pub fn energy_joules(power: &[(f64, f64)], window: Option<(f64, f64)>) -> Option<f64> {
    let (lo, hi) = window.unwrap_or((f64::NEG_INFINITY, f64::INFINITY));
    if hi <= lo {
        return None;
    }
    let mut total = 0.0;
    let mut segments = 0;
    for pair in power.windows(2) {
        let (&(t0, w0), &(t1, w1)) = (&pair[0], &pair[1]);
        if t1 <= t0 {
            continue;
        }
        let (a, b) = (t0.max(lo), t1.min(hi));
        if b <= a {
            continue;
        }
        let at = |t: f64| w0 + (w1 - w0) * (t - t0) / (t1 - t0);
        total += (at(a) + at(b)) / 2.0 * (b - a);
        segments += 1;
    }
    (segments > 0).then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_driver_is_a_note() {
        let err = GpuSampler::open_library(Path::new("/nonexistent/libnvidia-ml.so.1"))
            .err()
            .unwrap();
        assert!(err.starts_with("no NVIDIA driver"), "{err}");
    }

    #[test]
    fn energy_by_trapezoids_and_windows() {
        let p = [(0.0, 100.0), (10.0, 100.0), (20.0, 300.0)];
        assert_eq!(energy_joules(&p, None), Some(1000.0 + 2000.0));
        assert_eq!(
            energy_joules(&p, Some((5.0, 15.0))),
            Some(500.0 + 5.0 * 150.0)
        );
        assert_eq!(energy_joules(&p[..1], None), None);
        assert_eq!(energy_joules(&p, Some((30.0, 40.0))), None);
    }
}
