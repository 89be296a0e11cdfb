//! Generation throughput: our forward (on f32 or quantized weights) against candle's llama on the
//! same f32 weights, same process.
//!
//! For each batch size B: prefill B prompts of `prompt_len` tokens (logits at the last position
//! only, as generation needs), then `decode_steps` greedy steps of B tokens. Throughput is
//! tokens per second: B·prompt_len / t_prefill and B·decode_steps / t_decode, median of `repeats`
//! runs after one warm-up. Prompts are fixed pseudo-random token ids (no tokenizer needed).
//!
//! On a shared machine wall-clock figures depend on how much CPU the process got, so on Linux
//! the report also gives throughput per CPU-second of the whole process (user + system time from
//! `/proc/self/stat`, 10 ms ticks): tokens / CPU-seconds, summed over all threads.

use std::time::Instant;

use crate::error::Result;
use crate::kernels::machine::Machine;
use crate::model::candle_ref::CandleLlama;
use crate::model::generate::argmax;
use crate::model::llama::SeqInput;
use crate::model::{Llama, Params, Weights};

#[derive(Clone, Debug, PartialEq)]
pub struct BenchOptions {
    pub batches: Vec<usize>,
    pub prompt_len: usize,
    pub decode_steps: usize,
    pub repeats: usize,
    /// Also time candle's llama (copies the weights once more).
    pub candle: bool,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions { batches: vec![1, 16], prompt_len: 64, decode_steps: 32, repeats: 3, candle: true }
    }
}

/// Throughput of one engine at one batch size.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct BenchRow {
    /// `evotune` or `candle`.
    pub engine: &'static str,
    /// The weights the engine's forward read: `f32`, `quantized` or `q8_0`.
    pub weights: &'static str,
    pub batch: usize,
    pub prefill_tok_s: f64,
    pub decode_tok_s: f64,
    /// Tokens per CPU-second (all threads), when the OS reports process CPU time.
    #[serde(rename = "prefill_tok_per_cpu_s")]
    pub prefill_tok_cpu_s: Option<f64>,
    #[serde(rename = "decode_tok_per_cpu_s")]
    pub decode_tok_cpu_s: Option<f64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct BenchReport {
    /// CPU, our kernels' SIMD level and the threads both engines ran with.
    pub machine: Machine,
    pub prompt_len: usize,
    pub decode_steps: usize,
    pub rows: Vec<BenchRow>,
}

impl BenchReport {
    /// (prefill, decode) throughput ratio evotune / candle at batch `b` (both f32), when both were
    /// measured.
    pub fn ratio(&self, b: usize) -> Option<(f64, f64)> {
        let (ours, theirs) = (self.find("evotune", "f32", b)?, self.find("candle", "f32", b)?);
        Some((ours.prefill_tok_s / theirs.prefill_tok_s, ours.decode_tok_s / theirs.decode_tok_s))
    }

    /// (prefill, decode) throughput ratio of our forward on `weights` to ours on f32 at batch `b`.
    pub fn weights_ratio(&self, weights: &str, b: usize) -> Option<(f64, f64)> {
        let (q, f) = (self.find("evotune", weights, b)?, self.find("evotune", "f32", b)?);
        Some((q.prefill_tok_s / f.prefill_tok_s, q.decode_tok_s / f.decode_tok_s))
    }

    fn find(&self, engine: &str, weights: &str, b: usize) -> Option<&BenchRow> {
        self.rows.iter().find(|r| r.engine == engine && r.weights == weights && r.batch == b)
    }
}

/// One JSON line of `bench generate --json`: one engine at one batch size, with the machine.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BenchLine<'a> {
    #[serde(flatten)]
    pub machine: &'a Machine,
    pub prompt_len: usize,
    pub decode_steps: usize,
    #[serde(flatten)]
    pub row: &'a BenchRow,
}

impl BenchReport {
    /// One [`BenchLine`] per measured engine and batch size, in the order of [`BenchReport::rows`].
    pub fn json_lines(&self) -> Vec<BenchLine<'_>> {
        self.rows
            .iter()
            .map(|row| BenchLine {
                machine: &self.machine,
                prompt_len: self.prompt_len,
                decode_steps: self.decode_steps,
                row,
            })
            .collect()
    }

    /// Like [`BenchReport::ratio`], per CPU-second.
    pub fn cpu_ratio(&self, b: usize) -> Option<(f64, f64)> {
        let (ours, theirs) = (self.find("evotune", "f32", b)?, self.find("candle", "f32", b)?);
        Some((ours.prefill_tok_cpu_s? / theirs.prefill_tok_cpu_s?, ours.decode_tok_cpu_s? / theirs.decode_tok_cpu_s?))
    }
}

/// CPU seconds (user + system, all threads) this process has used, from `/proc/self/stat`.
fn process_cpu_seconds() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0) // USER_HZ is 100 on Linux
}

/// Wall and CPU seconds of one phase.
#[derive(Clone, Copy)]
struct Timing {
    wall: f64,
    cpu: Option<f64>,
}

struct Timer(Instant, Option<f64>);
impl Timer {
    fn start() -> Self {
        Timer(Instant::now(), process_cpu_seconds())
    }
    fn stop(&self) -> Timing {
        let cpu = match (self.1, process_cpu_seconds()) {
            (Some(a), Some(b)) => Some(b - a),
            _ => None,
        };
        Timing { wall: self.0.elapsed().as_secs_f64(), cpu }
    }
}

impl std::fmt::Display for BenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "generate benchmark: {}-token prompts, {} decode steps", self.prompt_len, self.decode_steps)?;
        writeln!(f, "{}", self.machine)?;
        writeln!(
            f,
            "{:<8} {:<10} {:>5} {:>14} {:>14} {:>18} {:>18}",
            "engine", "weights", "batch", "prefill tok/s", "decode tok/s", "prefill tok/cpu-s", "decode tok/cpu-s"
        )?;
        let opt = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.1}"));
        for r in &self.rows {
            writeln!(
                f,
                "{:<8} {:<10} {:>5} {:>14.1} {:>14.1} {:>18} {:>18}",
                r.engine,
                r.weights,
                r.batch,
                r.prefill_tok_s,
                r.decode_tok_s,
                opt(r.prefill_tok_cpu_s),
                opt(r.decode_tok_cpu_s)
            )?;
        }
        let mut bs: Vec<usize> = self.rows.iter().map(|r| r.batch).collect();
        bs.dedup();
        for b in bs {
            if let Some((p, d)) = self.ratio(b) {
                writeln!(f, "batch {b}: evotune/candle wall-clock prefill {p:.2}x, decode {d:.2}x")?;
                if let Some((p, d)) = self.cpu_ratio(b) {
                    writeln!(f, "batch {b}: evotune/candle per CPU-second prefill {p:.2}x, decode {d:.2}x")?;
                }
            }
            for w in ["quantized", "q8_0"] {
                if let Some((p, d)) = self.weights_ratio(w, b) {
                    writeln!(f, "batch {b}: evotune {w}/f32 wall-clock prefill {p:.2}x, decode {d:.2}x")?;
                }
            }
        }
        Ok(())
    }
}

/// Fixed pseudo-random prompts: B rows of `len` ids in [100, V).
fn prompts(b: usize, len: usize, vocab: usize) -> Vec<Vec<u32>> {
    let mut s: u64 = 0x2545_F491_4F6C_DD1D;
    (0..b)
        .map(|_| {
            (0..len)
                .map(|_| {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    (100 + s % (vocab.max(101) as u64 - 100)) as u32
                })
                .collect()
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One timed run of our engine: (prefill seconds, decode seconds).
fn run_ours(llama: &Llama, params: &dyn Weights, ps: &[Vec<u32>], steps: usize) -> Result<(Timing, Timing)> {
    let mut caches: Vec<_> =
        ps.iter().map(|p| crate::model::kv_cache::KvCache::with_capacity(&llama.config, p.len() + steps)).collect();
    let t0 = Timer::start();
    let logits = {
        let mut seqs: Vec<SeqInput> =
            ps.iter().zip(caches.iter_mut()).map(|(p, c)| SeqInput { tokens: p, cache: c, logits: 1 }).collect();
        llama.forward(params, &mut seqs)?
    };
    let prefill = t0.stop();
    let mut next: Vec<[u32; 1]> = (0..ps.len()).map(|i| [argmax(logits.row(i, 0))]).collect();
    let t1 = Timer::start();
    for _ in 0..steps {
        let mut seqs: Vec<SeqInput> =
            next.iter().zip(caches.iter_mut()).map(|(t, c)| SeqInput { tokens: t, cache: c, logits: 1 }).collect();
        let l = llama.forward(params, &mut seqs)?;
        next = (0..ps.len()).map(|i| [argmax(l.row(i, 0))]).collect();
    }
    Ok((prefill, t1.stop()))
}

fn run_candle(m: &CandleLlama, ps: &[Vec<u32>], steps: usize, vocab: usize) -> Result<(Timing, Timing)> {
    let mut cache = m.new_cache()?;
    let t0 = Timer::start();
    let mut logits = m.forward(ps, 0, &mut cache)?;
    let prefill = t0.stop();
    let t1 = Timer::start();
    for pos in ps[0].len()..ps[0].len() + steps {
        let next: Vec<Vec<u32>> = logits.chunks(vocab).map(|r| vec![argmax(r)]).collect();
        logits = m.forward(&next, pos, &mut cache)?;
    }
    Ok((prefill, t1.stop()))
}

/// Measures prefill and decode throughput of our forward on each of `ours` (a weights name and
/// the weights) and, given f32 `candle_params`, of candle's llama, at each batch size in
/// `opts.batches`.
pub fn bench_generate(
    llama: &Llama,
    ours: &[(&'static str, &dyn Weights)],
    candle_params: Option<&Params>,
    opts: &BenchOptions,
) -> Result<BenchReport> {
    let candle = match candle_params {
        Some(p) if opts.candle => Some(CandleLlama::new(&llama.config, p)?),
        _ => None,
    };
    let v = llama.config.vocab;
    let mut rows = Vec::new();
    let reps = opts.repeats.max(1);
    for &b in &opts.batches {
        let ps = prompts(b, opts.prompt_len, v);
        for &(name, params) in ours {
            let mut times = Vec::new();
            run_ours(llama, params, &ps, opts.decode_steps)?; // warm-up
            for _ in 0..reps {
                times.push(run_ours(llama, params, &ps, opts.decode_steps)?);
            }
            rows.push(row("evotune", name, b, opts, &times));
        }
        if let Some(m) = &candle {
            let mut theirs = Vec::new();
            run_candle(m, &ps, opts.decode_steps, v)?;
            for _ in 0..reps {
                theirs.push(run_candle(m, &ps, opts.decode_steps, v)?);
            }
            rows.push(row("candle", "f32", b, opts, &theirs));
        }
    }
    Ok(BenchReport { machine: Machine::current(), prompt_len: opts.prompt_len, decode_steps: opts.decode_steps, rows })
}

fn row(
    engine: &'static str,
    weights: &'static str,
    b: usize,
    opts: &BenchOptions,
    times: &[(Timing, Timing)],
) -> BenchRow {
    let p = median(times.iter().map(|t| t.0.wall).collect());
    let d = median(times.iter().map(|t| t.1.wall).collect());
    let cpu = |sel: fn(&(Timing, Timing)) -> Option<f64>| -> Option<f64> {
        let v: Option<Vec<f64>> = times.iter().map(sel).collect();
        v.map(median).filter(|&c| c > 0.0)
    };
    let (pt, dt) = ((b * opts.prompt_len) as f64, (b * opts.decode_steps) as f64);
    BenchRow {
        engine,
        weights,
        batch: b,
        prefill_tok_s: pt / p,
        decode_tok_s: if opts.decode_steps == 0 { 0.0 } else { dt / d },
        prefill_tok_cpu_s: cpu(|t| t.0.cpu).map(|c| pt / c),
        decode_tok_cpu_s: if opts.decode_steps == 0 { None } else { cpu(|t| t.1.cpu).map(|c| dt / c) },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_carry_the_machine_and_every_figure() {
        let machine = Machine {
            cpu: "cpu".into(),
            simd: "Avx2Fma".into(),
            simd_cap: Some("avx2".into()),
            int8: "avx2 (vpmaddubsw)".into(),
            threads: 2,
        };
        let row = |engine, batch| BenchRow {
            engine,
            weights: "f32",
            batch,
            prefill_tok_s: 10.0,
            decode_tok_s: 5.0,
            prefill_tok_cpu_s: Some(6.0),
            decode_tok_cpu_s: None,
        };
        let report = BenchReport {
            machine,
            prompt_len: 64,
            decode_steps: 32,
            rows: vec![row("evotune", 1), row("candle", 1), row("evotune", 16)],
        };
        let lines: Vec<serde_json::Value> =
            report.json_lines().iter().map(|l| serde_json::to_value(l).unwrap()).collect();
        assert_eq!(lines.len(), 3);
        let l = &lines[1];
        assert_eq!(l["engine"], "candle");
        assert_eq!(l["batch"], 1);
        assert_eq!(l["weights"], "f32");
        assert_eq!(l["cpu"], "cpu");
        assert_eq!(l["simd"], "Avx2Fma");
        assert_eq!(l["simd_cap"], "avx2");
        assert_eq!(l["threads"], 2);
        assert_eq!(l["prefill_tok_s"], 10.0);
        assert_eq!(l["decode_tok_s"], 5.0);
        assert_eq!(l["prefill_tok_per_cpu_s"], 6.0);
        assert!(l["decode_tok_per_cpu_s"].is_null());
        assert_eq!(l["prompt_len"], 64);
        assert_eq!(l["decode_steps"], 32);
        assert!(report
            .to_string()
            .contains("CPU: cpu · SIMD: Avx2Fma (EVOTUNE_SIMD=avx2) · int8: avx2 (vpmaddubsw) · 2 threads"));
    }
}
