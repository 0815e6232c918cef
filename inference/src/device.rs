//! Device selection from a string: `auto`, `cpu`, `cuda` or `cuda:N`.

use std::str::FromStr;

use candle_core::{DType, Device};

use crate::error::{Error, Result};

/// Which device to run the model on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceSpec {
    /// The first CUDA device when the crate is built with the `cuda` feature and a GPU can be
    /// opened, otherwise the CPU.
    #[default]
    Auto,
    /// The CPU (candle's matrix products use every core of rayon's global pool; set
    /// `RAYON_NUM_THREADS` to bound them).
    Cpu,
    /// CUDA device with this ordinal (requires the `cuda` feature).
    Cuda(usize),
}

impl FromStr for DeviceSpec {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let t = s.trim().to_ascii_lowercase();
        match t.as_str() {
            "auto" => Ok(DeviceSpec::Auto),
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" | "gpu" => Ok(DeviceSpec::Cuda(0)),
            _ => t
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(DeviceSpec::Cuda)
                .ok_or_else(|| Error::InvalidDevice {
                    spec: s.to_string(),
                }),
        }
    }
}

impl std::fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceSpec::Auto => write!(f, "auto"),
            DeviceSpec::Cpu => write!(f, "cpu"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl DeviceSpec {
    /// Opens the device.
    pub fn open(&self) -> Result<Device> {
        match self {
            DeviceSpec::Cpu => Ok(Device::Cpu),
            DeviceSpec::Cuda(n) => open_cuda(*n).map_err(|reason| Error::DeviceUnavailable {
                spec: self.to_string(),
                reason,
            }),
            DeviceSpec::Auto => {
                if cfg!(feature = "cuda") {
                    if let Ok(device) = open_cuda(0) {
                        return Ok(device);
                    }
                }
                Ok(Device::Cpu)
            }
        }
    }
}

/// Opens a CUDA device; a missing driver library makes cudarc panic, which we turn into an
/// error.
fn open_cuda(ordinal: usize) -> std::result::Result<Device, String> {
    if !cfg!(feature = "cuda") {
        return Err("this build has no CUDA support (enable the `cuda` feature)".into());
    }
    match std::panic::catch_unwind(|| Device::new_cuda(ordinal)) {
        Ok(Ok(device)) => Ok(device),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("the CUDA driver library could not be loaded".into()),
    }
}

/// The precision used when none is asked for: f32 on CPU, bf16 on CUDA (as the tutorial's
/// autocast).
pub fn default_dtype(device: &Device) -> DType {
    if device.is_cuda() {
        DType::BF16
    } else {
        DType::F32
    }
}

/// Checks that `dtype` is a float type the device computes in (f32 on CPU; f32, bf16 or f16 on
/// CUDA).
pub fn check_dtype(device: &Device, dtype: DType) -> Result<()> {
    let ok = match dtype {
        DType::F32 => true,
        DType::BF16 | DType::F16 => device.is_cuda(),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(Error::UnsupportedDtype {
            dtype,
            device: format!("{device:?}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_devices() {
        let parse = |s: &str| s.parse::<DeviceSpec>().ok();
        assert_eq!(parse("auto"), Some(DeviceSpec::Auto));
        assert_eq!(parse("CPU"), Some(DeviceSpec::Cpu));
        assert_eq!(parse("cuda"), Some(DeviceSpec::Cuda(0)));
        assert_eq!(parse("cuda:3"), Some(DeviceSpec::Cuda(3)));
        assert_eq!(parse("cuda:x"), None);
        assert_eq!(parse("tpu"), None);
        assert_eq!(DeviceSpec::Cuda(2).to_string(), "cuda:2");
    }

    #[test]
    fn cpu_opens_and_auto_falls_back() -> Result<()> {
        assert!(DeviceSpec::Cpu.open()?.is_cpu());
        if !cfg!(feature = "cuda") {
            assert!(DeviceSpec::Auto.open()?.is_cpu());
            assert!(DeviceSpec::Cuda(0).open().is_err());
        }
        Ok(())
    }
}
