//! Gradients by backpropagation through the llama forward, for the GRPO baseline
//! ([`crate::rl`]): ES needs none of this.
//!
//! - [`layers`]: one backward function per forward function (llm.c's layout), generic over the
//!   float, each tested against central finite differences in f64.
//! - [`pass`]: the whole model: a forward that keeps a tape, and the backward from ∂loss/∂logp of
//!   the scored tokens to ∂loss/∂θ.
//! - [`real`]: f32 (training: the matmuls on [`crate::kernels`], fixed summation order, so
//!   gradients are bit-identical for any thread count and SIMD level) or f64 (tests).

pub mod layers;
pub mod pass;
pub mod real;

pub use pass::{backward, check_supported, forward, forward_flops, Tape, TrainSeq};
pub use real::Real;

#[cfg(test)]
mod tests;
