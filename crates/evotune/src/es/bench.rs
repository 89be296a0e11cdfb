//! Throughput of the ES engine's hot paths (printed by `evotune bench es`).
//!
//! - noise: normals per second into an L1-resident buffer (the generator alone), on one thread and
//!   on all of rayon's threads;
//! - one noise pass: `perturb_into` over d parameters (θ + σε into a second arena);
//! - one update: θ += α/N Σ c ε over d parameters for N members (no AWD), compared with N
//!   noise passes — the fused update reads and writes θ once instead of N times.

use std::sync::Arc;
use std::time::Instant;

use rayon::prelude::*;

use crate::error::Result;
use crate::es::noise::{self, NoiseKey};
use crate::es::{Anchor, EsParams, EsState, Member, Strategy};
use crate::kernels::machine::Machine;
use crate::kernels::{simd_level, Level};
use crate::model::{Layout, Params, ThetaSource};

/// Figures from [`bench_es`]; times in seconds. Serialized (`bench es --json`) as one flat object:
/// the machine's fields, then these.
#[derive(Clone, Debug, serde::Serialize)]
pub struct EsBenchReport {
    /// CPU, the SIMD level the noise generator dispatched to, and rayon's threads.
    #[serde(flatten)]
    pub machine: Machine,
    pub d: usize,
    pub population: usize,
    /// Giga-normals per second, one thread.
    pub noise_gnps_1thread: f64,
    /// Giga-normals per second of the raw generator at each vector width this CPU has, one thread,
    /// per CPU second where measurable (the portable loop is what a build without runtime
    /// dispatch would get). A JSON object `{level: rate}`, in this order.
    #[serde(serialize_with = "as_map")]
    pub noise_gnps_by_level: Vec<(String, f64)>,
    /// Giga-normals per second of the calling thread's CPU time (insensitive to other load on the
    /// machine; Linux only, 0 elsewhere).
    pub noise_gnps_1thread_cpu: f64,
    /// Giga-normals per second, all threads.
    pub noise_gnps_all: f64,
    /// One `perturb_into` over d parameters (best of 3).
    pub noise_pass_s: f64,
    /// One full update over d parameters and N members (best of 2).
    pub update_s: f64,
    /// CPU seconds (all threads) of that update (Linux only, 0 elsewhere): the wall time it would
    /// take on one otherwise idle core.
    pub update_cpu_s: f64,
    /// update_s / (N · noise_pass_s): below 1 means the fused update beats N separate passes.
    pub update_vs_n_passes: f64,
}

fn as_map<S: serde::Serializer>(pairs: &[(String, f64)], s: S) -> std::result::Result<S::Ok, S::Error> {
    s.collect_map(pairs.iter().map(|(k, v)| (k, v)))
}

impl std::fmt::Display for EsBenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "ES engine, d = {}, N = {}", self.d, self.population)?;
        writeln!(f, "{}", self.machine)?;
        writeln!(f, "  noise generator   {:7.3} G normals/s (1 thread)", self.noise_gnps_1thread)?;
        writeln!(f, "  noise generator   {:7.3} G normals/s per CPU second (1 thread)", self.noise_gnps_1thread_cpu)?;
        writeln!(f, "  noise generator   {:7.3} G normals/s ({} threads)", self.noise_gnps_all, self.machine.threads)?;
        for (level, g) in &self.noise_gnps_by_level {
            writeln!(f, "    {level:<10} loop {g:7.3} G normals/s per CPU second (1 thread)")?;
        }
        writeln!(f, "  one noise pass    {:7.3} s  (θ + σε into a second arena)", self.noise_pass_s)?;
        writeln!(
            f,
            "  one update        {:7.3} s  (N = {} members, fused; {:.3} CPU s)",
            self.update_s, self.population, self.update_cpu_s
        )?;
        write!(f, "  update / (N × noise pass) = {:.3}", self.update_vs_n_passes)
    }
}

/// θ0 = 0 without storing it.
struct Zeros;
impl ThetaSource for Zeros {
    fn read_tensor(&self, _id: usize, out: &mut [f32]) -> Result<()> {
        out.fill(0.0);
        Ok(())
    }
}

/// Best wall time of `reps` runs of `f`.
fn best_of(reps: usize, mut f: impl FnMut()) -> f64 {
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

/// CPU time of the calling thread in seconds (`/proc/thread-self/schedstat`, nanoseconds).
fn thread_cpu_s() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    Some(text.split_whitespace().next()?.parse::<f64>().ok()? * 1e-9)
}

/// User + system CPU time of the whole process in seconds (`/proc/self/stat`, USER_HZ = 100).
fn process_cpu_s() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = text.rsplit_once(')')?.1.split_whitespace().collect();
    // After the command name: state is field 3, utime field 14, stime field 15 (1-based).
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// Generates `count` normals of one stream in L1 blocks, on the current thread; returns a sum so
/// the work cannot be optimised away.
fn generate(key: &NoiseKey, start: u64, count: usize) -> f32 {
    let mut buf = [0.0f32; 4096];
    let mut sink = 0.0f32;
    let mut i = 0;
    while i < count {
        let n = (count - i).min(buf.len());
        key.fill(start + i as u64, &mut buf[..n]);
        sink += buf[0];
        i += n;
    }
    sink
}

/// Measures the figures above at `d` parameters and `population` members (e.g. 135e6 and 30).
/// Errors, before measuring anything, on a population [`Strategy::new`] refuses (fewer than 2).
pub fn bench_es(d: usize, population: usize) -> Result<EsBenchReport> {
    let params = EsParams { population, ..EsParams::paper() };
    // No AWD, so θ0 is never read: a zero source avoids a third arena of d floats.
    let es = Strategy::new(params, Anchor::Source(Arc::new(Zeros)))?;
    let machine = Machine::current();
    let threads = machine.threads;
    let key = NoiseKey { seed: 1, iteration: 2, noise_id: 3, tensor_key: 4 };

    let count = d.clamp(1 << 20, 1 << 26);
    let t1 = best_of(2, || {
        std::hint::black_box(generate(&key, 0, count));
    });
    let c0 = thread_cpu_s();
    std::hint::black_box(generate(&key, 0, count));
    let cpu1 = match (c0, thread_cpu_s()) {
        (Some(a), Some(b)) if b > a => count as f64 / (b - a) / 1e9,
        _ => 0.0,
    };
    let per_task = count.div_ceil(threads * 8).max(1 << 16);
    let tall = best_of(2, || {
        let s: f32 = (0..count.div_ceil(per_task))
            .into_par_iter()
            .map(|k| generate(&key, (k * per_task) as u64, per_task.min(count - k * per_task)))
            .sum();
        std::hint::black_box(s);
    });

    let levels = [Level::Portable, Level::Avx2Fma, Level::Avx512];
    let noise_gnps_by_level = levels
        .iter()
        .filter(|&&l| {
            l == Level::Portable || (l == Level::Avx2Fma && simd_level() != Level::Portable) || l == simd_level()
        })
        .map(|&l| {
            let keys = [1, 2, 3, 4];
            let mut buf = [0.0f32; 4096];
            let n = count.min(1 << 25);
            let run = |buf: &mut [f32; 4096]| {
                for b in 0..n / buf.len() {
                    noise::normals_at(l, keys, (b * buf.len() / 2) as u32, buf);
                    std::hint::black_box(&buf);
                }
            };
            // CPU time of this thread where available (robust to other load), else wall time.
            let c0 = thread_cpu_s();
            let wall = best_of(1, || run(&mut buf));
            let t = match (c0, thread_cpu_s()) {
                (Some(a), Some(b)) if b > a => b - a,
                _ => wall,
            };
            (format!("{l:?}"), (n / buf.len() * buf.len()) as f64 / t / 1e9)
        })
        .collect();

    // A model-like arena: tensors of at most 2^24 elements.
    let mut layout = Layout::new();
    let mut left = d;
    let mut k = 0;
    while left > 0 {
        let n = left.min(1 << 24);
        layout.push(format!("model.layers.{k}.mlp.up_proj.weight"), vec![n]);
        left -= n;
        k += 1;
    }
    let layout = Arc::new(layout);
    let theta = Params::zeros(layout.clone());
    let mut out = Params::zeros(layout);
    let member = Member { index: 0, noise_id: 0, sign: 1.0 };
    let noise_pass_s = best_of(3, || es.perturb_into(&theta, 0, &member, &mut out));
    drop(out);

    let mut state = EsState::new(theta);
    let pop = es.ask(&state);
    let rewards: Vec<f32> = (0..population).map(|n| n as f32).collect();
    let step = |state: &mut EsState| {
        let mut p = pop.clone();
        p.iteration = state.iteration;
        es.tell(state, &p, &rewards).expect("finite rewards");
    };
    let update_s = best_of(2, || step(&mut state));
    let c0 = process_cpu_s();
    step(&mut state);
    let update_cpu_s = match (c0, process_cpu_s()) {
        (Some(a), Some(b)) => b - a,
        _ => 0.0,
    };

    Ok(EsBenchReport {
        machine,
        d,
        population,
        noise_gnps_1thread: count as f64 / t1 / 1e9,
        noise_gnps_by_level,
        noise_gnps_1thread_cpu: cpu1,
        update_cpu_s,
        noise_gnps_all: count as f64 / tall / 1e9,
        noise_pass_s,
        update_s,
        update_vs_n_passes: update_s / (population as f64 * noise_pass_s),
    })
}
