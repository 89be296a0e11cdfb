//! Laws of the QES update on rewards that carry no signal (the `random` task's regime), checked
//! on a synthetic Q8_0 store (no model needed), as `es_laws.rs` does for f32 ES.
//!
//! With members' moves u (P(u ≠ 0) = p) and shaped coefficients c, one step adds α·ĝ to the
//! high-precision position δ = (c − c0) + e of every code, with E[(α·ĝ)²] = v_t =
//! (α/σ)²·p·Σₖ(c₊ₖ − c₋ₖ)² (mirrored pairs k). With β = 1 (no decay of the residual) the
//! position is exact, so
//! - without AWD, E[δ_T²] = E[δ_0²] + Σ_t v_t (a random walk);
//! - with AWD-l2, δ' = (1 − τ)(δ + α·ĝ), τ = α·λ: E[δ²] settles at (1 − τ)²·v/(1 − (1 − τ)²);
//! - with AWD-l1, most codes sit exactly on c0 with e = 0.
//!
//! With the paper's β = 0.9 the residual leaks toward the current code, so a pull smaller than
//! (1 − β)/2 per step never moves a code: the last test measures that and checks that AWD still
//! settles. Last, QES climbs a quadratic reward on a few codes (the update points uphill).

mod support;

use std::sync::Arc;

use evotune::es::code_noise::nonzero_probability;
use evotune::es::code_population::CodePopulation;
use evotune::es::noise::{IterationNoise, NoiseMode};
use evotune::es::qes::{self, QesParams, Residual, Step};
use evotune::es::shaping::{shape, NonFinitePolicy, Shaping};
use evotune::es::{population, Awd};
use evotune::kernels::{QFormat, QMatrix};
use evotune::model::weights::Stored;
use evotune::model::{Layout, QuantizedParams};

const ROWS: usize = 64;
const COLS: usize = 4096;
const SIGMA: f64 = 0.01;
const N: usize = 8;

/// One Q8_0 matrix of 262 144 codes, all 0 (far from the range ends ±127), scale 1.
fn store() -> QuantizedParams {
    store_of(ROWS, COLS)
}

fn store_of(rows: usize, cols: usize) -> QuantizedParams {
    let mut l = Layout::new();
    l.push("model.layers.0.mlp.up_proj.weight", vec![rows, cols]);
    let q = QMatrix::from_rows(QFormat::Q8_0, rows, cols, |_, c, d, _| {
        c.fill(0);
        d.fill(half::f16::from_f32(1.0).to_bits());
    });
    QuantizedParams::new(Arc::new(l), vec![Stored::Quant(q)])
}

/// Mean over codes of δ² = ((c − c0) + e)², and the fraction of codes exactly on c0 with e = 0.
fn position(s: &QuantizedParams, e: &Residual) -> (f64, f64) {
    let Stored::Quant(q) = s.stored(0) else { unreachable!() };
    let (mut sq, mut zero) = (0.0f64, 0usize);
    for i in 0..ROWS * COLS {
        let c = q.code(i / COLS, i % COLS);
        let r = e.value(0, i).unwrap();
        sq += (c as f64 + r as f64).powi(2);
        zero += (c == 0 && r == 0.0) as usize;
    }
    (sq / (ROWS * COLS) as f64, zero as f64 / (ROWS * COLS) as f64)
}

/// `steps` QES steps on random rewards; returns E[δ²] after each step, the fraction of exact
/// zeros at the end, and v_t of each step.
fn walk(p: &QesParams, steps: u64, e0: bool) -> (Vec<f64>, f64, Vec<f64>) {
    let base = store();
    let mut s = base.clone();
    let mut e = if e0 { Residual::init(&s, 3, true) } else { Residual::init(&s, 3, false) };
    let mut rng = support::Rng(0x9e37_79b9_7f4a_7c15);
    let (mut msd, mut v) = (Vec::new(), Vec::new());
    let pz = nonzero_probability(SIGMA);
    for t in 0..steps {
        let members = population::members(N, true, t).members;
        let noise = IterationNoise { seed: 11, iteration: t, mode: NoiseMode::Iid };
        let moves = CodePopulation::new(&s, &noise, &members, SIGMA).into_moves();
        let rewards: Vec<f32> = members.iter().map(|_| rng.next_f32()).collect();
        let c = shape(Shaping::Zscore, NonFinitePolicy::Error, &rewards).unwrap();
        // Members come in pairs (+, −) of the same noise.
        let pairs: f64 = c.chunks(2).map(|k| (k[0] as f64 - k[1] as f64).powi(2)).sum();
        v.push((p.alpha as f64 / SIGMA).powi(2) * pz * pairs);
        let step = Step { iteration: t, members: &members, coefficients: &c, moves: &moves };
        qes::apply(&mut s, &mut e, Some(&base), &step, p).unwrap();
        msd.push(position(&s, &e).0);
    }
    let zeros = position(&s, &e).1;
    (msd, zeros, v)
}

fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len() as f64
}

/// α/σ = 3: a touched code moves by a few steps, so the walk is fast and the ±1.5 clamp of e
/// never binds (|s − round(s)| ≤ ½).
const ALPHA: f32 = 0.03;

#[test]
fn without_awd_the_codes_random_walk() {
    let p = QesParams { sigma: SIGMA, alpha: ALPHA, beta: 1.0, feedback: true, awd: Awd::None };
    let (msd, _, v) = walk(&p, 60, true);
    // E[δ_0²] = E[e_0²] = 1/12 (U(−½, ½)).
    let want = 1.0 / 12.0 + v.iter().sum::<f64>();
    let got = *msd.last().unwrap();
    println!("no AWD: E[δ²] after 60 steps {got:.3}, random-walk law {want:.3}");
    assert!((got / want - 1.0).abs() < 0.08, "E[δ²] {got} vs {want}");
}

#[test]
fn awd_l2_settles_at_the_ornstein_uhlenbeck_level() {
    let lambda = 0.5f32; // τ = 0.015: relaxation time of E[δ²] ≈ 1/(2τ) = 33 steps
    let p = QesParams { sigma: SIGMA, alpha: ALPHA, beta: 1.0, feedback: true, awd: Awd::L2 { lambda } };
    let (msd, _, v) = walk(&p, 300, false);
    let tau = (ALPHA * lambda) as f64;
    let k = (1.0 - tau).powi(2);
    let want = k * mean(&v[150..]) / (1.0 - k);
    let (early, late) = (mean(&msd[150..225]), mean(&msd[225..]));
    println!("AWD-l2: E[δ²] over steps 150–225 {early:.3}, 225–300 {late:.3}; OU level {want:.3}");
    assert!((late / early - 1.0).abs() < 0.1, "not stationary: {early} then {late}");
    assert!((late / want - 1.0).abs() < 0.1, "E[δ²] {late} vs the OU level {want}");
    // Far below the free walk's Σv over the same 300 steps.
    assert!(late < 0.2 * v.iter().sum::<f64>());
}

#[test]
fn awd_l1_keeps_most_codes_exactly_on_the_base() {
    let p = QesParams { sigma: SIGMA, alpha: ALPHA, beta: 1.0, feedback: true, awd: Awd::L1 { lambda: 20.0 } };
    let (msd, zeros, _) = walk(&p, 60, false);
    let free = QesParams { awd: Awd::None, ..p };
    let (free_msd, free_zeros, _) = walk(&free, 60, false);
    println!(
        "AWD-l1: E[δ²] {:.3} with {:.1}% exact zeros; without AWD {:.3} with {:.1}%",
        msd.last().unwrap(),
        100.0 * zeros,
        free_msd.last().unwrap(),
        100.0 * free_zeros
    );
    // 85% of the codes were touched in 60 steps (so off c0 without AWD); l1 brings most back exactly.
    assert!(free_zeros < 0.2 && zeros > 0.8, "{zeros} vs {free_zeros}");
    assert!(*msd.last().unwrap() < 0.5 * free_msd.last().unwrap());
}

#[test]
fn with_the_papers_decay_awd_still_settles() {
    let lambda = 0.5f32;
    let p = QesParams { sigma: SIGMA, alpha: ALPHA, beta: 0.9, feedback: true, awd: Awd::L2 { lambda } };
    let (msd, _, v) = walk(&p, 300, false);
    let free = QesParams { awd: Awd::None, ..p };
    let (free_msd, _, _) = walk(&free, 300, false);
    let tau = (ALPHA * lambda) as f64;
    let k = (1.0 - tau).powi(2);
    let ou = k * mean(&v[150..]) / (1.0 - k);
    let (early, late) = (mean(&msd[150..225]), mean(&msd[225..]));
    println!(
        "β = 0.9, AWD-l2: E[δ²] {early:.3} then {late:.3} (OU level at β = 1: {ou:.3}; dead zone |c − c0| < \
         (1 − β)/(2τ) = {:.1}); without AWD {:.3}",
        0.1 / (2.0 * tau),
        free_msd.last().unwrap()
    );
    assert!((late / early - 1.0).abs() < 0.1, "not stationary: {early} then {late}");
    assert!(late < 0.5 * free_msd.last().unwrap());
}

/// QES climbs a quadratic reward: −‖c − c*‖² over 128 codes that start at 0, toward a target
/// c* ∈ [−3, 3] (σ = 0.1: about 10 codes move per member). Each member's reward is computed from its moves (the rest of the sum is
/// the same for every member), so only the update is tested; the paper's β = 0.9 is kept.
#[test]
fn qes_climbs_a_quadratic_reward() {
    let p = QesParams { sigma: 0.1, alpha: 0.02, beta: 0.9, feedback: true, awd: Awd::None };
    let (rows, cols) = (2, 64);
    let target = |i: usize| (((i as u64 * 2_654_435_761) >> 7) % 7) as i32 - 3;
    let mut s = store_of(rows, cols);
    let base = s.clone();
    let mut e = Residual::init(&s, 5, true);
    let distance = |s: &QuantizedParams| -> f64 {
        let Stored::Quant(q) = s.stored(0) else { unreachable!() };
        (0..rows * cols).map(|i| (q.code(i / cols, i % cols) - target(i)).pow(2) as f64).sum::<f64>()
            / (rows * cols) as f64
    };
    let start = distance(&s);
    for t in 0..300 {
        let members = population::members(16, true, t).members;
        let noise = IterationNoise { seed: 21, iteration: t, mode: NoiseMode::Iid };
        let moves = CodePopulation::new(&s, &noise, &members, p.sigma).into_moves();
        let Stored::Quant(q) = s.stored(0) else { unreachable!() };
        let rewards: Vec<f32> = moves
            .iter()
            .map(|m| {
                let u = &m[0];
                let mut r = 0i64;
                for (list, step) in [(&u.plus, 1), (&u.minus, -1)] {
                    for &i in list {
                        let i = i as usize;
                        let c = q.code(i / cols, i % cols) - target(i);
                        r -= ((c + step).pow(2) - c.pow(2)) as i64;
                    }
                }
                r as f32
            })
            .collect();
        let c = shape(Shaping::Zscore, NonFinitePolicy::Error, &rewards).unwrap();
        let step = Step { iteration: t, members: &members, coefficients: &c, moves: &moves };
        qes::apply(&mut s, &mut e, Some(&base), &step, &p).unwrap();
    }
    let end = distance(&s);
    println!("mean (c − c*)²: {start:.3} at the start, {end:.3} after 300 steps");
    assert!(end < 0.25 * start, "{start} → {end}");
}
