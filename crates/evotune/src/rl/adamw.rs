//! AdamW (Loshchilov & Hutter; PyTorch's `torch.optim.AdamW`) with global-norm gradient clipping.
//!
//! ```text
//! g ← g · min(1, c / ‖g‖₂)                 clipping (c = 0: off)
//! t ← t + 1
//! m ← β₁m + (1 − β₁)g,   v ← β₂v + (1 − β₂)g²
//! θ ← θ·(1 − lr·wd) − lr · (m / (1 − β₁ᵗ)) / (√(v / (1 − β₂ᵗ)) + ε)
//! ```
//!
//! Elementwise over the flat arena in fixed chunks; ‖g‖ is summed in f64 per chunk and the chunk
//! sums in order, so every result is identical for any thread count.

use rayon::prelude::*;

/// Elements per parallel chunk.
const CHUNK: usize = 1 << 16;

/// AdamW's settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWParams {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    /// Global-norm clip c (0 = none).
    pub grad_clip: f32,
}

/// The optimiser's state: the moments and the step count.
#[derive(Clone, Debug, PartialEq)]
pub struct AdamW {
    pub m: Vec<f32>,
    pub v: Vec<f32>,
    pub t: u64,
}

/// ‖g‖₂, summed as the module doc says.
pub fn global_norm(g: &[f32]) -> f64 {
    let parts: Vec<f64> = g.par_chunks(CHUNK).map(|c| c.iter().map(|&x| (x as f64) * (x as f64)).sum()).collect();
    parts.iter().sum::<f64>().sqrt()
}

impl AdamW {
    /// Zero moments for `d` parameters.
    pub fn new(d: usize) -> AdamW {
        AdamW { m: vec![0.0; d], v: vec![0.0; d], t: 0 }
    }

    /// One step on `theta` with gradient `grad` (clipped in place). Returns ‖g‖ before clipping.
    pub fn step(&mut self, theta: &mut [f32], grad: &mut [f32], p: &AdamWParams) -> f64 {
        assert!(theta.len() == grad.len() && grad.len() == self.m.len(), "AdamW: lengths differ");
        let norm = global_norm(grad);
        let scale =
            if p.grad_clip > 0.0 && norm > p.grad_clip as f64 { (p.grad_clip as f64 / norm) as f32 } else { 1.0 };
        self.t += 1;
        let bc1 = 1.0 - (p.beta1 as f64).powi(self.t as i32);
        let bc2 = 1.0 - (p.beta2 as f64).powi(self.t as i32);
        let (lr_t, inv_sqrt_bc2) = ((p.lr as f64 / bc1) as f32, (1.0 / bc2.sqrt()) as f32);
        let decay = 1.0 - p.lr * p.weight_decay;
        theta
            .par_chunks_mut(CHUNK)
            .zip(grad.par_chunks_mut(CHUNK))
            .zip(self.m.par_chunks_mut(CHUNK).zip(self.v.par_chunks_mut(CHUNK)))
            .for_each(|((th, g), (m, v))| {
                for i in 0..th.len() {
                    g[i] *= scale;
                    m[i] = p.beta1 * m[i] + (1.0 - p.beta1) * g[i];
                    v[i] = p.beta2 * v[i] + (1.0 - p.beta2) * g[i] * g[i];
                    th[i] = th[i] * decay - lr_t * m[i] / (v[i].sqrt() * inv_sqrt_bc2 + p.eps);
                }
            });
        norm
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two steps by hand (f64) against the implementation.
    #[test]
    fn matches_the_formula_and_clips() {
        let p = AdamWParams { lr: 0.1, beta1: 0.9, beta2: 0.99, eps: 1e-8, weight_decay: 0.5, grad_clip: 1.0 };
        let mut theta = vec![1.0f32, -2.0];
        let mut opt = AdamW::new(2);
        let grads = [[3.0f32, 4.0], [0.3, -0.1]];
        let (mut th, mut m, mut v) = ([1.0f64, -2.0], [0.0f64; 2], [0.0f64; 2]);
        for (t, g) in grads.iter().enumerate() {
            let norm = (g[0] as f64).hypot(g[1] as f64);
            let scale = if norm > 1.0 { 1.0 / norm } else { 1.0 };
            let mut gm = *g;
            let got = opt.step(&mut theta, &mut gm, &p);
            assert!((got - norm).abs() < 1e-6);
            let tt = (t + 1) as i32;
            for i in 0..2 {
                let gi = g[i] as f64 * scale;
                m[i] = 0.9 * m[i] + 0.1 * gi;
                v[i] = 0.99 * v[i] + 0.01 * gi * gi;
                let (mh, vh) = (m[i] / (1.0 - 0.9f64.powi(tt)), v[i] / (1.0 - 0.99f64.powi(tt)));
                th[i] = th[i] * (1.0 - 0.1 * 0.5) - 0.1 * mh / (vh.sqrt() + 1e-8);
                assert!((theta[i] as f64 - th[i]).abs() < 1e-5, "step {t}, {i}: {} vs {}", theta[i], th[i]);
            }
        }
        // The first step was clipped to norm 1: its gradient came back scaled.
        assert_eq!(opt.t, 2);
    }

    #[test]
    fn zero_gradient_leaves_theta_without_weight_decay() {
        let p = AdamWParams { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, grad_clip: 0.0 };
        let mut theta = vec![0.25f32; 5];
        AdamW::new(5).step(&mut theta, &mut [0.0; 5], &p);
        assert_eq!(theta, vec![0.25; 5]);
    }
}
