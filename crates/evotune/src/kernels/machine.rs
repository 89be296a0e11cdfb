//! The machine a benchmark ran on, for its header and its JSON lines: the CPU model, the SIMD level
//! the kernels dispatched to ([`super::simd_level`], capped by `EVOTUNE_SIMD`) and the threads of
//! the rayon pool it ran in.

use std::fmt;

/// CPU model, SIMD level and threads of the current process and rayon pool.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Machine {
    /// The `model name` of `/proc/cpuinfo`; the architecture (`x86_64`, `aarch64`, …) where there
    /// is none.
    pub cpu: String,
    /// The kernels' level: `Avx512`, `Avx2Fma` or `Portable`.
    pub simd: String,
    /// The value of `EVOTUNE_SIMD` when it is set (it caps [`Machine::simd`]).
    pub simd_cap: Option<String>,
    /// The integer kernel of the quantized matmul at that level ([`super::QuantKernel`]).
    pub int8: String,
    /// Threads of the rayon pool [`Machine::current`] was called in.
    pub threads: usize,
}

impl Machine {
    /// This machine, with the threads of the rayon pool the caller runs in (call it inside the
    /// pool the benchmark uses).
    pub fn current() -> Machine {
        Machine {
            cpu: cpu_model().unwrap_or_else(|| std::env::consts::ARCH.to_string()),
            simd: format!("{:?}", super::simd_level()),
            simd_cap: std::env::var("EVOTUNE_SIMD").ok(),
            int8: super::QuantKernel::at(super::simd_level()).name().to_string(),
            threads: rayon::current_num_threads(),
        }
    }
}

/// The first `model name` line of `/proc/cpuinfo` (Linux on x86; ARM kernels often have none).
fn cpu_model() -> Option<String> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim() == "model name")
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

impl fmt::Display for Machine {
    /// `CPU: Intel(R) Xeon(R) Processor · SIMD: Avx2Fma (EVOTUNE_SIMD=avx2) · int8: avx2 (vpmaddubsw) · 2 threads`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CPU: {} · SIMD: {}", self.cpu, self.simd)?;
        if let Some(cap) = &self.simd_cap {
            write!(f, " (EVOTUNE_SIMD={cap})")?;
        }
        let s = if self.threads == 1 { "" } else { "s" };
        write!(f, " · int8: {} · {} thread{s}", self.int8, self.threads)
    }
}

#[cfg(test)]
mod tests {
    use super::Machine;

    #[test]
    fn current_names_a_cpu_a_level_and_the_pool_threads() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        let m = pool.install(Machine::current);
        assert!(!m.cpu.trim().is_empty(), "{m:?}");
        assert!(["Avx512", "Avx2Fma", "Portable"].contains(&m.simd.as_str()), "{m:?}");
        assert_eq!(m.threads, 3);
        let json = serde_json::to_value(&m).unwrap();
        for key in ["cpu", "simd", "simd_cap", "int8", "threads"] {
            assert!(json.get(key).is_some(), "{json}");
        }
    }

    #[test]
    fn display_names_the_cap_when_set() {
        let m = Machine {
            cpu: "Intel(R) Xeon(R) Processor".into(),
            simd: "Avx2Fma".into(),
            simd_cap: Some("avx2".into()),
            int8: "avx2 (vpmaddubsw)".into(),
            threads: 2,
        };
        assert_eq!(
            m.to_string(),
            "CPU: Intel(R) Xeon(R) Processor · SIMD: Avx2Fma (EVOTUNE_SIMD=avx2) · int8: avx2 (vpmaddubsw) · 2 threads"
        );
        let one =
            Machine { simd: "Avx512".into(), simd_cap: None, int8: "avx512-vnni (vpdpbusd)".into(), threads: 1, ..m };
        assert_eq!(
            one.to_string(),
            "CPU: Intel(R) Xeon(R) Processor · SIMD: Avx512 · int8: avx512-vnni (vpdpbusd) · 1 thread"
        );
    }
}
