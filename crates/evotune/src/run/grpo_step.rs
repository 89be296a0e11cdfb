//! One GRPO step on the f32 θ, and the state file a GRPO run resumes from.
//!
//! ```text
//! prompts  = the iteration's minibatch, each repeated G times
//! samples  = generate(θ, temperature, top-p)     seeds: a pure function of (seed, step, sequence)
//! rewards  = the task's reward of each completion;  Â = group-normalised (crate::rl::grpo)
//! per micro-batch of sequences (prompt ++ completion ++ its stop token):
//!     logp = forward(θ) with a tape;  ref = forward(θ0) (β > 0);  c = ∂L/∂logp
//!     grad += backward(tape, c)                  micro-batches in order: fixed sums
//! θ, m, v  = AdamW(θ, grad)                      repeated `updates` times on the same samples
//! ```
//!
//! GRPO has no seed trajectory to replay, so a run resumes from its state file
//! ([`STATE_FILE`]: θ, AdamW's moments and the step, with a SHA-256), written atomically at every
//! checkpoint and at the end; the steps after it are recomputed to the same bits.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::model::backprop::{self, TrainSeq};
use crate::model::generate::{generate_with_stops, GenerateStats};
use crate::model::{GenerateOptions, Model, Params, Sampling};
use crate::rl::{advantages, AdamW, GrpoParams, TokenObjective};
use crate::tasks::rng::mix64;
use crate::tasks::{Item, Task};

/// The state file in a GRPO run's directory.
pub const STATE_FILE: &str = "grpo_state.bin";
const MAGIC: &[u8; 16] = b"evotune-grpo-v1\n";

/// A GRPO run's state between steps.
pub struct GrpoState {
    pub theta: Params,
    /// θ0: the reference policy of the KL penalty and the drift's anchor.
    pub theta0: Arc<Params>,
    pub adam: AdamW,
    /// Steps taken.
    pub step: u64,
}

/// What one step measured.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GrpoStepStats {
    /// The rewards of every completion (prompt-major, G per prompt).
    pub rewards: Vec<f32>,
    /// L of the first update, mean k3 per completion token, the fraction of clipped tokens (all
    /// updates), ‖g‖ before clipping (last update).
    pub loss: f64,
    pub kl: f64,
    pub clip_fraction: f64,
    pub grad_norm: f64,
    /// Completion tokens trained on, and the tokens through forward + backward (prompts included).
    pub completion_tokens: usize,
    pub trained_tokens: usize,
    pub sample_seconds: f64,
    pub update_seconds: f64,
    /// The update's parts: forwards with a tape, reference forwards, backwards, AdamW.
    pub forward_seconds: f64,
    pub reference_seconds: f64,
    pub backward_seconds: f64,
    pub optimizer_seconds: f64,
    /// FLOPs of the forwards, reference forwards and backwards ([`backprop::forward_flops`]).
    pub train_flops: f64,
}

impl GrpoState {
    /// A fresh run at θ0.
    pub fn new(theta0: Params) -> GrpoState {
        let d = theta0.data().len();
        GrpoState { theta: theta0.clone(), theta0: Arc::new(theta0), adam: AdamW::new(d), step: 0 }
    }

    /// One step on `items` (see the module doc).
    pub fn step(
        &mut self,
        model: &Model,
        p: &GrpoParams,
        seed: u64,
        task: &dyn Task,
        items: &[&Item],
        gen_stats: &mut GenerateStats,
    ) -> Result<GrpoStepStats> {
        backprop::check_supported(&model.llama)?;
        let t0 = Instant::now();
        let g = p.group;
        let ids: Vec<Vec<u32>> =
            items.iter().map(|i| model.encode_prompt(&i.prompt, task.response_prefix())).collect::<Result<_>>()?;
        let prompts: Vec<Vec<u32>> = ids.iter().flat_map(|x| std::iter::repeat_n(x.clone(), g)).collect();
        let opts = GenerateOptions {
            max_new_tokens: task.max_new_tokens(),
            sampling: Sampling::Sample {
                temperature: p.temperature,
                top_p: p.top_p,
                seed: mix64(seed ^ mix64(self.step)),
            },
            stop_tokens: model.tokenizer.stop_tokens.clone(),
        };
        let (outs, stops) = generate_with_stops(&model.llama, &self.theta, None, &prompts, &opts, gen_stats)?;
        let completions: Vec<String> = outs.iter().map(|t| model.tokenizer.decode(t, true)).collect::<Result<_>>()?;
        let repeated: Vec<&Item> = items.iter().flat_map(|&i| std::iter::repeat_n(i, g)).collect();
        let rewards: Vec<f32> = task.rewards(&repeated, &completions)?.iter().map(|r| r.value).collect();
        if let Some(i) = rewards.iter().position(|r| !r.is_finite()) {
            return Err(Error::NonFiniteReward { member: i, value: rewards[i] });
        }
        let adv = advantages(&rewards, g);
        let mut stats = GrpoStepStats { sample_seconds: t0.elapsed().as_secs_f64(), ..Default::default() };

        // Training sequences: prompt ++ completion ++ its stop token (a completion that stopped is
        // trained to stop); each scored from its first completion token.
        let seqs: Vec<(Vec<u32>, usize, f32)> = prompts
            .iter()
            .zip(outs.iter().zip(&stops))
            .zip(&adv)
            .filter(|((_, (o, s)), _)| !o.is_empty() || s.is_some())
            .map(|((pr, (o, s)), &a)| {
                let mut toks = pr.clone();
                toks.extend_from_slice(o);
                toks.extend(s.iter());
                (toks, pr.len(), a)
            })
            .collect();
        let n_seq = seqs.len();
        stats.completion_tokens = seqs.iter().map(|(t, from, _)| t.len() - from).sum();
        let t1 = Instant::now();
        let layout = self.theta.layout().clone();
        let mut grad = vec![0.0f32; self.theta.data().len()];
        // π_old and π_ref of every sequence, from the first update.
        let mut old: Vec<Vec<f32>> = Vec::with_capacity(n_seq);
        let mut reference: Vec<Vec<f32>> = Vec::with_capacity(n_seq);
        let mut clipped = 0usize;
        for update in 0..p.updates {
            grad.fill(0.0);
            let mut loss = 0.0;
            for (c, chunk) in seqs.chunks(p.micro_batch).enumerate() {
                let batch: Vec<TrainSeq> =
                    chunk.iter().map(|(t, from, _)| TrainSeq { tokens: t, scored_from: *from }).collect();
                let temp = p.temperature as f64;
                let fwd_flops = backprop::forward_flops(&model.llama, &batch);
                let tf = Instant::now();
                let (logp, tape) = backprop::forward(&model.llama, &layout, self.theta.data(), &batch, temp, true)?;
                stats.forward_seconds += tf.elapsed().as_secs_f64();
                stats.train_flops += 3.0 * fwd_flops;
                stats.trained_tokens += batch.iter().map(|s| s.tokens.len()).sum::<usize>();
                let per_seq = split_by(&logp, &batch);
                if update == 0 {
                    old.extend(per_seq.iter().map(|x| x.to_vec()));
                    if p.kl_beta > 0.0 {
                        let tr = Instant::now();
                        let (r, _) = backprop::forward(&model.llama, &layout, self.theta0.data(), &batch, temp, false)?;
                        stats.reference_seconds += tr.elapsed().as_secs_f64();
                        stats.train_flops += fwd_flops;
                        reference.extend(split_by(&r, &batch).iter().map(|x| x.to_vec()));
                    }
                }
                let mut coef = Vec::with_capacity(logp.len());
                for (j, lp) in per_seq.iter().enumerate() {
                    let i = c * p.micro_batch + j;
                    let weight = 1.0 / (lp.len() as f64 * n_seq as f64);
                    let refs = reference.get(i).map(|r| r.as_slice());
                    let obj = TokenObjective::new(lp, &old[i], refs, chunk[j].2, weight, p);
                    loss += obj.loss;
                    clipped += obj.clipped;
                    if update == 0 {
                        stats.kl += obj.kl_sum;
                    }
                    coef.extend_from_slice(&obj.coef);
                }
                if coef.iter().any(|x| !x.is_finite()) {
                    return Err(Error::BadStep {
                        iteration: self.step + 1,
                        problem: "a token's log-probability or its gradient coefficient is not finite".into(),
                    });
                }
                let tb = Instant::now();
                backprop::backward(&model.llama, &layout, self.theta.data(), tape.expect("kept"), &coef, &mut grad);
                stats.backward_seconds += tb.elapsed().as_secs_f64();
            }
            if update == 0 {
                stats.loss = loss;
            }
            let ta = Instant::now();
            stats.grad_norm = self.adam.step(self.theta.data_mut(), &mut grad, &p.adamw());
            stats.optimizer_seconds += ta.elapsed().as_secs_f64();
            if !stats.grad_norm.is_finite() {
                return Err(Error::BadStep { iteration: self.step + 1, problem: "the gradient is not finite".into() });
            }
        }
        let tokens = stats.completion_tokens.max(1) as f64;
        stats.kl /= tokens;
        stats.clip_fraction = clipped as f64 / (tokens * p.updates as f64);
        stats.update_seconds = t1.elapsed().as_secs_f64();
        stats.rewards = rewards;
        self.step += 1;
        Ok(stats)
    }

    /// Writes θ, the moments and the step to `path` atomically (the old file stays whole until the
    /// new one is complete).
    pub fn save(&self, path: &Path) -> Result<()> {
        crate::files::write_atomic(path, |w| {
            let mut h = Sha256::new();
            let mut put = |w: &mut std::io::BufWriter<std::fs::File>, bytes: &[u8]| -> std::io::Result<()> {
                h.update(bytes);
                w.write_all(bytes)
            };
            put(w, MAGIC)?;
            for x in [self.step, self.adam.t, self.theta.data().len() as u64] {
                put(w, &x.to_le_bytes())?;
            }
            for arr in [self.theta.data(), &self.adam.m, &self.adam.v] {
                for chunk in arr.chunks(1 << 16) {
                    let bytes: Vec<u8> = chunk.iter().flat_map(|x| x.to_le_bytes()).collect();
                    put(w, &bytes)?;
                }
            }
            w.write_all(&h.finalize())
        })
    }

    /// Reads a state written by [`GrpoState::save`] for θ0's layout; errors name the file.
    pub fn load(path: &Path, theta0: Params) -> Result<GrpoState> {
        let bad = |problem: String| Error::RunDir { path: path.to_owned(), problem };
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let d = theta0.data().len();
        let expected = MAGIC.len() + 24 + 12 * d + 32;
        if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
            return Err(bad("not a GRPO state file (bad magic)".into()));
        }
        if bytes.len() != expected {
            return Err(bad(format!("{} bytes, expected {expected} for {d} parameters (truncated?)", bytes.len())));
        }
        let (body, sum) = bytes.split_at(expected - 32);
        if Sha256::digest(body).as_slice() != sum {
            return Err(bad("checksum mismatch: the file is corrupt".into()));
        }
        let u = |i: usize| u64::from_le_bytes(body[MAGIC.len() + 8 * i..][..8].try_into().unwrap());
        if u(2) as usize != d {
            return Err(bad(format!("holds {} parameters, the model has {d}", u(2))));
        }
        let floats = |k: usize| -> Vec<f32> {
            body[MAGIC.len() + 24 + 4 * d * k..][..4 * d]
                .chunks(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect()
        };
        let theta = Params::from_vec(theta0.layout().clone(), floats(0));
        Ok(GrpoState {
            theta,
            theta0: Arc::new(theta0),
            adam: AdamW { m: floats(1), v: floats(2), t: u(1) },
            step: u(0),
        })
    }
}

/// `logp` (every scored token of `batch`, in order) split per sequence.
fn split_by<'a>(logp: &'a [f32], batch: &[TrainSeq<'_>]) -> Vec<&'a [f32]> {
    let mut out = Vec::with_capacity(batch.len());
    let mut at = 0;
    for s in batch {
        let n = s.tokens.len() - s.scored_from;
        out.push(&logp[at..at + n]);
        at += n;
    }
    out
}
