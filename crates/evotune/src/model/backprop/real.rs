//! The float type of a training pass: f32 for training (the matmul runs on [`crate::kernels`],
//! with their fixed summation order), f64 for the finite-difference tests (plain loops).

use std::fmt::Debug;
use std::iter::Sum;
use std::ops::{Add, AddAssign, Div, Mul, MulAssign, Neg, Sub, SubAssign};

use rayon::prelude::*;

/// A float the layer functions of [`super::layers`] run on.
pub trait Real:
    Copy
    + Send
    + Sync
    + Default
    + Debug
    + PartialOrd
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
    + Sum
    + 'static
{
    const ZERO: Self;
    const ONE: Self;
    fn from_f64(v: f64) -> Self;
    fn to_f64(self) -> f64;
    fn exp(self) -> Self;
    fn ln(self) -> Self;
    fn sqrt(self) -> Self;
    /// y[b, o] = Σₖ x[b, k]·w[o, k]   (x: (B, K), w: (O, K), y: (B, O)), every sum in a fixed order.
    fn matmul(x: &[Self], w: &[Self], y: &mut [Self], b: usize, k: usize, o: usize);
    /// Σᵢ a[i]·b[i] in a fixed order.
    fn dot(a: &[Self], b: &[Self]) -> Self;
}

impl Real for f32 {
    const ZERO: f32 = 0.0;
    const ONE: f32 = 1.0;
    fn from_f64(v: f64) -> f32 {
        v as f32
    }
    fn to_f64(self) -> f64 {
        self as f64
    }
    /// The kernels' exponential (the same bits on every CPU and SIMD level).
    fn exp(self) -> f32 {
        crate::kernels::exp::exp(self)
    }
    fn ln(self) -> f32 {
        f32::ln(self)
    }
    fn sqrt(self) -> f32 {
        f32::sqrt(self)
    }
    fn matmul(x: &[f32], w: &[f32], y: &mut [f32], b: usize, k: usize, o: usize) {
        crate::kernels::matmul(x, w, y, b, k, o)
    }
    /// The kernels' dot: 16 lanes and a fixed tree at every SIMD level (the same bits).
    fn dot(a: &[f32], b: &[f32]) -> f32 {
        crate::kernels::dot(a, b)
    }
}

impl Real for f64 {
    const ZERO: f64 = 0.0;
    const ONE: f64 = 1.0;
    fn from_f64(v: f64) -> f64 {
        v
    }
    fn to_f64(self) -> f64 {
        self
    }
    fn exp(self) -> f64 {
        f64::exp(self)
    }
    fn ln(self) -> f64 {
        f64::ln(self)
    }
    fn sqrt(self) -> f64 {
        f64::sqrt(self)
    }
    fn matmul(x: &[f64], w: &[f64], y: &mut [f64], b: usize, k: usize, o: usize) {
        assert!(x.len() == b * k && w.len() == o * k && y.len() == b * o, "matmul: bad lengths");
        if k == 0 {
            y.fill(0.0);
            return;
        }
        y.par_chunks_mut(o.max(1)).zip(x.par_chunks(k)).for_each(|(yr, xr)| {
            for (yo, wr) in yr.iter_mut().zip(w.chunks(k)) {
                *yo = Self::dot(xr, wr);
            }
        });
    }
    fn dot(a: &[f64], b: &[f64]) -> f64 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }
}
