//! Batched generation: prefill all prompts in one forward, then decode step by step with a
//! per-sequence KV cache, one batched forward per step over the sequences still running.
//!
//! Greedy decoding takes the argmax (ties → lowest token id). Sampling divides the logits by the
//! temperature, keeps the smallest set of most likely tokens whose probability reaches `top_p`
//! (nucleus), and draws from it with a uniform number that is a pure function of
//! (seed, sequence index, step) — so a run is reproducible and independent of thread count.
//!
//! Batch invariance: the forward computes each sequence's rows from its own tokens and cache only
//! (see [`crate::model::llama`]), so a prompt's greedy output is the same alone or in any batch.

use std::sync::Arc;
use std::time::Instant;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::model::delta::Deltas;
use crate::model::kv_cache::KvCache;
use crate::model::llama::{Logits, SeqInput};
use crate::model::Llama;
use crate::model::Weights;

#[derive(Clone, Debug, PartialEq)]
pub enum Sampling {
    Greedy,
    /// Temperature + nucleus sampling, seeded per sequence (deterministic).
    Sample {
        temperature: f32,
        top_p: f32,
        seed: u64,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct GenerateOptions {
    pub max_new_tokens: usize,
    pub sampling: Sampling,
    /// A sequence stops after emitting any of these (the stop token is not returned).
    pub stop_tokens: Vec<u32>,
}

/// What one `generate` call computed: tokens through the forward and the time it took.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct GenerateStats {
    /// Prompt tokens run through the forward (a shared prefix counts once per distinct group).
    pub prefill_tokens: usize,
    /// Tokens the prompt tokens stand for (every prompt in full, shared prefixes included).
    pub prompt_tokens: usize,
    /// Tokens run through decode steps.
    pub decode_tokens: usize,
    /// Batched forwards: of the prefill (shared prefixes included) and of decode steps.
    pub prefill_forwards: usize,
    pub decode_forwards: usize,
    /// New tokens produced, stop tokens included.
    pub generated_tokens: usize,
    pub prefill_seconds: f64,
    pub decode_seconds: f64,
}

impl GenerateStats {
    /// Adds another call's counts and times.
    pub fn add(&mut self, o: &GenerateStats) {
        self.prefill_tokens += o.prefill_tokens;
        self.prompt_tokens += o.prompt_tokens;
        self.decode_tokens += o.decode_tokens;
        self.prefill_forwards += o.prefill_forwards;
        self.decode_forwards += o.decode_forwards;
        self.generated_tokens += o.generated_tokens;
        self.prefill_seconds += o.prefill_seconds;
        self.decode_seconds += o.decode_seconds;
    }
}

/// Shortest prefix worth sharing: below this the extra batch-1 forward costs more than it saves.
const MIN_SHARED_PREFIX: usize = 8;

/// Length of the token prefix common to all prompts (leaving each at least one token of its own),
/// or 0 when there is a single prompt or the prefix is too short to be worth sharing.
pub fn shared_prefix_len(prompts: &[Vec<u32>]) -> usize {
    if prompts.len() < 2 {
        return 0;
    }
    let first = &prompts[0];
    let mut n = prompts.iter().map(|p| p.len()).min().unwrap_or(0).saturating_sub(1);
    for p in &prompts[1..] {
        n = n.min(first.iter().zip(p).take_while(|(a, b)| a == b).count());
    }
    if n >= MIN_SHARED_PREFIX {
        n
    } else {
        0
    }
}

/// Generates continuations of every prompt in one batch. Returns the new tokens of each sequence
/// (without the stop token). A prompt's greedy output does not depend on the rest of the batch.
///
/// Errors: an empty prompt ([`Error::EmptyPrompt`]); a prompt whose length plus `max_new_tokens`
/// exceeds the model's context ([`Error::ContextOverflow`], checked up front so that no sequence is
/// cut short silently); a token id outside the vocabulary; a NaN or infinite logit
/// ([`Error::NonFiniteLogits`], naming the prompt and the step: 0 for the first new token).
pub fn generate(
    llama: &Llama,
    params: &dyn Weights,
    prompts: &[Vec<u32>],
    opts: &GenerateOptions,
) -> Result<Vec<Vec<u32>>> {
    generate_with(llama, params, None, prompts, opts, &mut GenerateStats::default())
}

/// [`generate`] where prompt i runs with the weights of its group `deltas.group_of[i]` (see
/// [`crate::model::delta`]), adding what it computed to `stats`. The shared prefix is computed
/// once per distinct group. A prompt's output equals that of a batch holding only its group.
pub fn generate_with(
    llama: &Llama,
    params: &dyn Weights,
    deltas: Option<Deltas<'_>>,
    prompts: &[Vec<u32>],
    opts: &GenerateOptions,
    stats: &mut GenerateStats,
) -> Result<Vec<Vec<u32>>> {
    Ok(generate_with_stops(llama, params, deltas, prompts, opts, stats)?.0)
}

/// Each sequence's new tokens (without the stop token), and the stop token that ended it (`None`:
/// it reached `max_new_tokens`).
pub type Completions = (Vec<Vec<u32>>, Vec<Option<u32>>);

/// [`generate_with`], also returning the stop token that ended each sequence, for a caller that
/// trains on the whole completion (GRPO).
pub fn generate_with_stops(
    llama: &Llama,
    params: &dyn Weights,
    deltas: Option<Deltas<'_>>,
    prompts: &[Vec<u32>],
    opts: &GenerateOptions,
    stats: &mut GenerateStats,
) -> Result<Completions> {
    if let Sampling::Sample { temperature, top_p, .. } = opts.sampling {
        // (NaN fails every comparison, so it is refused too)
        let (t_ok, p_ok) = (temperature >= 0.0, top_p > 0.0 && top_p <= 1.0);
        if !t_ok || !p_ok {
            return Err(Error::BadModelConfig {
                field: "sampling",
                problem: format!("temperature {temperature} must be ≥ 0 and top_p {top_p} in (0, 1]"),
            });
        }
    }
    let max = llama.config.context;
    for (i, p) in prompts.iter().enumerate() {
        if p.is_empty() {
            return Err(Error::EmptyPrompt { index: i });
        }
        if p.len() + opts.max_new_tokens > max {
            return Err(Error::ContextOverflow { index: i, len: p.len() + opts.max_new_tokens, max });
        }
    }
    let mut out: Vec<Vec<u32>> = vec![Vec::new(); prompts.len()];
    let mut stops: Vec<Option<u32>> = vec![None; prompts.len()];
    if opts.max_new_tokens == 0 || prompts.is_empty() {
        return Ok((out, stops));
    }
    // Shared prefix (the chat template's system prompt, typically): its keys and values are
    // computed once per group and read by every sequence's cache (not copied). Rows of the forward
    // do not depend on the batch and a cached prefix equals a recomputed one bit for bit, so the
    // outputs are identical to a plain prefill.
    let t_prefill = Instant::now();
    let group_of: Vec<usize> = match deltas {
        Some(dl) if dl.group_of.len() == prompts.len() => dl.group_of.to_vec(),
        Some(dl) => {
            return Err(Error::ForwardInput {
                index: dl.group_of.len().min(prompts.len()),
                problem: format!("{} group ids for {} prompts", dl.group_of.len(), prompts.len()),
            })
        }
        None => vec![0; prompts.len()],
    };
    let shared = shared_prefix_len(prompts);
    let mut caches: Vec<KvCache> = if shared > 0 {
        // One prefix cache per distinct group, in order of first appearance.
        let mut groups: Vec<usize> = Vec::new();
        for &g in &group_of {
            if !groups.contains(&g) {
                groups.push(g);
            }
        }
        let mut prefixes: Vec<KvCache> = groups.iter().map(|_| KvCache::with_capacity(&llama.config, shared)).collect();
        let mut seqs: Vec<SeqInput> =
            prefixes.iter_mut().map(|c| SeqInput { tokens: &prompts[0][..shared], cache: c, logits: 0 }).collect();
        llama.forward_with(params, deltas.map(|dl| dl.with_groups(&groups)), &mut seqs)?;
        stats.prefill_tokens += shared * groups.len();
        stats.prefill_forwards += 1;
        let prefixes: Vec<Arc<KvCache>> = prefixes.into_iter().map(Arc::new).collect();
        prompts
            .iter()
            .zip(&group_of)
            .map(|(p, g)| {
                let at = groups.iter().position(|x| x == g).expect("every group has a prefix");
                KvCache::after(&prefixes[at], p.len() + opts.max_new_tokens)
            })
            .collect()
    } else {
        prompts.iter().map(|p| KvCache::with_capacity(&llama.config, p.len() + opts.max_new_tokens)).collect()
    };

    // Prefill: every prompt (after the shared prefix) in one forward, logits at each prompt's last position.
    let mut next: Vec<u32> = {
        let mut seqs: Vec<SeqInput> = prompts
            .iter()
            .zip(caches.iter_mut())
            .map(|(p, c)| SeqInput { tokens: &p[shared..], cache: c, logits: 1 })
            .collect();
        let logits = llama.forward_with(params, deltas.map(|dl| dl.with_groups(&group_of)), &mut seqs)?;
        stats.prefill_tokens += prompts.iter().map(|p| p.len() - shared).sum::<usize>();
        stats.prefill_forwards += 1;
        stats.prompt_tokens += prompts.iter().map(|p| p.len()).sum::<usize>();
        pick_each(&logits, &(0..prompts.len()).collect::<Vec<_>>(), &opts.sampling, 0)?
    };
    stats.prefill_seconds += t_prefill.elapsed().as_secs_f64();
    let t_decode = Instant::now();
    let mut active: Vec<usize> = (0..prompts.len()).collect();
    for step in 1..=opts.max_new_tokens {
        // Record the tokens chosen at the previous step; retire finished sequences.
        active.retain(|&i| {
            let t = next[i];
            stats.generated_tokens += 1;
            if opts.stop_tokens.contains(&t) {
                stops[i] = Some(t);
                return false;
            }
            out[i].push(t);
            out[i].len() < opts.max_new_tokens
        });
        if active.is_empty() || step == opts.max_new_tokens {
            break;
        }
        // Decode: one token per active sequence, one batched forward.
        let toks: Vec<[u32; 1]> = active.iter().map(|&i| [next[i]]).collect();
        let mut seqs: Vec<SeqInput> = Vec::with_capacity(active.len());
        let mut rest: &mut [KvCache] = &mut caches;
        let mut base = 0;
        for (a, &i) in active.iter().enumerate() {
            let (_, tail) = rest.split_at_mut(i - base);
            let (c, tail) = tail.split_first_mut().expect("active index within caches");
            seqs.push(SeqInput { tokens: &toks[a], cache: c, logits: 1 });
            rest = tail;
            base = i + 1;
        }
        let groups: Vec<usize> = active.iter().map(|&i| group_of[i]).collect();
        let logits = llama.forward_with(params, deltas.map(|dl| dl.with_groups(&groups)), &mut seqs)?;
        stats.decode_tokens += active.len();
        stats.decode_forwards += 1;
        for (&i, t) in active.iter().zip(pick_each(&logits, &active, &opts.sampling, step)?) {
            next[i] = t;
        }
    }
    stats.decode_seconds += t_decode.elapsed().as_secs_f64();
    Ok((out, stops))
}

/// Index of the largest logit; ties go to the lowest id. NaNs never win.
pub fn argmax(logits: &[f32]) -> u32 {
    argmax_and_finite(logits).0
}

/// [`argmax`] when every logit is finite, `None` when one is NaN or infinite.
pub fn argmax_finite(logits: &[f32]) -> Option<u32> {
    let (best, finite) = argmax_and_finite(logits);
    finite.then_some(best)
}

/// The argmax and whether every logit is finite, in one pass over the row.
fn argmax_and_finite(logits: &[f32]) -> (u32, bool) {
    let mut best = 0usize;
    let mut bv = f32::NEG_INFINITY;
    let mut finite = true;
    for (i, &x) in logits.iter().enumerate() {
        finite &= x.is_finite();
        if x > bv {
            bv = x;
            best = i;
        }
    }
    (best as u32, finite)
}

/// The next token of each sequence `seqs[a]` from logits row a, the rows in parallel; the error
/// of the first sequence (in order) whose row is bad.
fn pick_each(logits: &Logits, seqs: &[usize], sampling: &Sampling, step: usize) -> Result<Vec<u32>> {
    let picked: Vec<Result<u32>> =
        seqs.par_iter().enumerate().map(|(a, &i)| pick(logits.row(a, 0), sampling, i, step)).collect();
    picked.into_iter().collect()
}

/// Chooses the next token of sequence `seq` at decoding step `step`. Non-finite logits are an
/// error ([`Error::NonFiniteLogits`]): a NaN row has no argmax and no distribution to sample, and
/// choosing a token anyway would hide a corrupt or diverged model behind plausible-looking output.
fn pick(logits: &[f32], sampling: &Sampling, seq: usize, step: usize) -> Result<u32> {
    let nonfinite = || Error::NonFiniteLogits { step, sequence: seq };
    match *sampling {
        Sampling::Greedy => argmax_finite(logits).ok_or_else(nonfinite),
        Sampling::Sample { temperature, top_p, seed } => {
            if temperature == 0.0 {
                return argmax_finite(logits).ok_or_else(nonfinite);
            }
            if !logits.iter().all(|x| x.is_finite()) {
                return Err(nonfinite());
            }
            let u = uniform(seed, seq as u64, step as u64);
            Ok(sample_top_p(logits, temperature, top_p, u))
        }
    }
}

/// Nucleus sampling with uniform u ∈ [0, 1): p ∝ exp((logit − max)/temperature); sort by p
/// descending (ties by id), keep the shortest prefix with Σp ≥ top_p, and return the token where
/// the renormalised cumulative sum first exceeds u. Sums in f64, in sorted order (deterministic).
pub fn sample_top_p(logits: &[f32], temperature: f32, top_p: f32, u: f64) -> u32 {
    let m = logits.iter().copied().filter(|x| !x.is_nan()).fold(f32::NEG_INFINITY, f32::max);
    let t = temperature as f64;
    let mut p: Vec<(f64, u32)> = logits
        .iter()
        .enumerate()
        .map(|(i, &x)| (if x.is_nan() { 0.0 } else { ((x - m) as f64 / t).exp() }, i as u32))
        .collect();
    p.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let total: f64 = p.iter().map(|e| e.0).sum();
    let mut keep = 0.0;
    let mut n = 0;
    for e in &p {
        keep += e.0;
        n += 1;
        if keep >= top_p as f64 * total {
            break;
        }
    }
    let target = u * keep;
    let mut acc = 0.0;
    for e in &p[..n] {
        acc += e.0;
        if acc > target {
            return e.1;
        }
    }
    p[n - 1].1
}

/// A uniform number in [0, 1) from (seed, sequence, step): SplitMix64 finalisers over the mixed
/// key, 53 bits of mantissa.
fn uniform(seed: u64, seq: u64, step: u64) -> f64 {
    fn mix(mut z: u64) -> u64 {
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    let z = mix(mix(mix(seed) ^ seq) ^ step);
    (z >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_ties_go_to_lowest_id() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0]), 1);
        assert_eq!(argmax(&[f32::NAN, 0.5, 0.5]), 1);
        assert_eq!(argmax(&[-1.0]), 0);
    }

    #[test]
    fn argmax_finite_agrees_with_argmax_and_rejects_nan_and_inf() {
        for row in [&[1.0, 3.0, 3.0, 2.0][..], &[-1.0], &[0.0, -0.0, 5e-39, -3e38]] {
            assert_eq!(argmax_finite(row), Some(argmax(row)));
        }
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            assert_eq!(argmax_finite(&[0.5, bad, 0.25]), None);
            let e = pick(&[0.5, bad], &Sampling::Greedy, 3, 7).unwrap_err();
            assert!(matches!(e, Error::NonFiniteLogits { step: 7, sequence: 3 }), "{e}");
            let sample = Sampling::Sample { temperature: 0.8, top_p: 0.9, seed: 1 };
            assert!(matches!(pick(&[bad, 0.5], &sample, 0, 2), Err(Error::NonFiniteLogits { step: 2, sequence: 0 })));
        }
    }

    #[test]
    fn nucleus_keeps_only_the_top_mass() {
        // probabilities ∝ e^(logit): [0.665, 0.245, 0.090]; top_p 0.5 keeps only token 0.
        let l = [2.0, 1.0, 0.0];
        for k in 0..100 {
            assert_eq!(sample_top_p(&l, 1.0, 0.5, k as f64 / 100.0), 0);
        }
        // top_p 0.8 keeps tokens 0 and 1: u below 0.665/0.910 picks 0, above picks 1, never 2.
        assert_eq!(sample_top_p(&l, 1.0, 0.8, 0.70), 0);
        assert_eq!(sample_top_p(&l, 1.0, 0.8, 0.75), 1);
        assert_eq!(sample_top_p(&l, 1.0, 0.8, 0.999), 1);
        // top_p 1: the last token is reachable.
        assert_eq!(sample_top_p(&l, 1.0, 1.0, 0.999), 2);
    }

    #[test]
    fn uniform_is_a_pure_function_in_unit_interval() {
        let a: Vec<f64> = (0..1000).map(|i| uniform(7, i % 13, i / 13)).collect();
        let b: Vec<f64> = (0..1000).map(|i| uniform(7, i % 13, i / 13)).collect();
        assert_eq!(a, b);
        assert!(a.iter().all(|&u| (0.0..1.0).contains(&u)));
        let mean = a.iter().sum::<f64>() / 1000.0;
        assert!((mean - 0.5).abs() < 0.05, "mean {mean}");
        assert_ne!(uniform(7, 0, 0), uniform(8, 0, 0));
    }
}
