//! Laws the ES engine must obey, checked on synthetic parameters (no model needed).
//!
//! - random rewards: E‖θ_T − θ0‖² = α²·d·T/N (z-scores have Σz² = N, so the law is sharp);
//! - AWD-l2 settles at the Ornstein–Uhlenbeck level ≈ α·d/(2λN);
//! - AWD-l1 produces exact zeros of θ − θ0;
//! - ES climbs a quadratic reward;
//! - mirrored pairs with symmetric rewards do not move θ at all.

mod support;

use std::sync::Arc;

use evotune::es::{Anchor, Awd, EsParams, EsState, Population, Strategy};
use evotune::model::{Layout, Params};

/// A small model-like layout of `d` parameters spread over a few tensors of uneven sizes.
fn layout(d: usize) -> Arc<Layout> {
    let mut l = Layout::new();
    let mut left = d;
    let mut k = 0;
    while left > 0 {
        let n = left.min(d / 3 + 7);
        l.push(format!("model.layers.{k}.mlp.up_proj.weight"), vec![n]);
        left -= n;
        k += 1;
    }
    Arc::new(l)
}

fn squared_distance(a: &Params, b: &Params) -> f64 {
    a.data().iter().zip(b.data()).map(|(&x, &y)| (x as f64 - y as f64).powi(2)).sum()
}

/// Runs `iterations` steps with rewards drawn independently of the noise; returns ‖θ − θ0‖².
fn random_walk(params: EsParams, d: usize, iterations: usize, reward_seed: u64) -> (Params, Params) {
    let theta0 = Params::zeros(layout(d));
    let es = Strategy::new(params, Anchor::InMemory(Arc::new(theta0.clone()))).unwrap();
    let mut state = EsState::new(theta0.clone());
    let mut rng = support::Rng(reward_seed);
    for _ in 0..iterations {
        let pop = es.ask(&state);
        let rewards: Vec<f32> = pop.members.iter().map(|_| rng.next_f32()).collect();
        es.tell(&mut state, &pop, &rewards).unwrap();
    }
    (state.theta, theta0)
}

#[test]
fn random_rewards_follow_the_drift_law() {
    let (d, t, alpha) = (1_000_000usize, 200usize, 5e-4f32);
    for (n, seeds) in [(8usize, 2u64), (32, 1)] {
        let mut sum = 0.0;
        for seed in 0..seeds {
            let params = EsParams { population: n, alpha, seed, ..EsParams::paper() };
            let (theta, theta0) = random_walk(params, d, t, 1000 + seed);
            sum += squared_distance(&theta, &theta0);
        }
        let measured = sum / seeds as f64;
        let law = (alpha as f64).powi(2) * d as f64 * t as f64 / n as f64;
        println!("N = {n}: ‖θ_T − θ0‖² = {measured:.6e}, α²dT/N = {law:.6e}, ratio {:.4}", measured / law);
        assert!((measured / law - 1.0).abs() < 0.05, "N = {n}: {measured} vs {law}");
    }
}

#[test]
fn awd_l2_settles_at_the_ornstein_uhlenbeck_level() {
    // αλ = 0.02: ρ = 0.98, so the variance relaxes with time constant ≈ 1/(2αλ) = 25 steps.
    let (d, n, t, alpha, lambda) = (1_000_000usize, 8usize, 150usize, 5e-3f32, 4.0f32);
    let params = EsParams { population: n, alpha, awd: Awd::L2 { lambda }, seed: 3, ..EsParams::paper() };
    let (theta, theta0) = random_walk(params, d, t, 77);
    let measured = squared_distance(&theta, &theta0);
    // Exact expectation of the recursion δ ← ρ(δ + u), E‖u‖² = a = α²d/N, measured after the decay:
    // E_t = ρ²(E_{t−1} + a), E_0 = 0; its fixed point is ρ²a/(1 − ρ²).
    let (a, rho) = ((alpha as f64).powi(2) * d as f64 / n as f64, 1.0 - (alpha * lambda) as f64);
    let exact = (0..t).fold(0.0, |e, _| rho * rho * (e + a));
    let stationary = rho * rho * a / (1.0 - rho * rho);
    let ou = alpha as f64 * d as f64 / (2.0 * lambda as f64 * n as f64);
    println!(
        "AWD-l2: ‖θ_T − θ0‖² = {measured:.5e}; exact E_T = {exact:.5e}; fixed point ρ²a/(1−ρ²) = {stationary:.5e}; \
         a/(1−ρ²) = {:.5e}; αd/(2λN) = {ou:.5e}",
        a / (1.0 - rho * rho)
    );
    assert!((measured / exact - 1.0).abs() < 0.03, "{measured} vs exact {exact}");
    assert!((exact / stationary - 1.0).abs() < 0.01, "not settled: {exact} vs {stationary}");
    assert!((measured / ou - 1.0).abs() < 0.10, "{measured} vs αd/(2λN) = {ou}");
}

#[test]
fn awd_l1_produces_exact_zeros() {
    let (d, n, alpha) = (100_000usize, 8usize, 1e-3f32);
    // Per-step change per element ~ α/√N = 3.5e-4; threshold αλ = 5e-4 zeroes most of them.
    let params = EsParams { population: n, alpha, awd: Awd::L1 { lambda: 0.5 }, seed: 9, ..EsParams::paper() };
    let (theta, theta0) = random_walk(params.clone(), d, 20, 5);
    let zeros = theta.data().iter().zip(theta0.data()).filter(|(a, b)| a.to_bits() == b.to_bits()).count();
    let free = EsParams { awd: Awd::None, ..params };
    let (theta_free, _) = random_walk(free, d, 20, 5);
    let zeros_free = theta_free.data().iter().zip(theta0.data()).filter(|(a, b)| a.to_bits() == b.to_bits()).count();
    println!("AWD-l1: {zeros} of {d} elements exactly at θ0 (without AWD: {zeros_free})");
    assert!(zeros > d / 2, "{zeros} exact zeros");
    assert!(zeros < d, "everything pinned: the threshold is too large to test anything");
    assert_eq!(zeros_free, 0);
}

#[test]
fn es_climbs_a_quadratic() {
    // reward(θ) = −‖θ − θ*‖², d = 1000, θ0 = 0, θ* ~ N(0, 1): start at distance ≈ 31.6.
    let d = 1000;
    let l = layout(d);
    let target: Vec<f32> = {
        let mut v = vec![0.0; d];
        evotune::es::noise::NoiseKey { seed: 99, iteration: 0, noise_id: 0, tensor_key: 0 }.fill(0, &mut v);
        v
    };
    let theta0 = Params::zeros(l.clone());
    // Equilibrium distance of the random part ≈ αd/(2N) = 1.6 (see the drift law).
    let params = EsParams { population: 64, sigma: 0.01, alpha: 0.2, seed: 1, ..EsParams::paper() };
    let es = Strategy::new(params, Anchor::InMemory(Arc::new(theta0.clone()))).unwrap();
    let mut state = EsState::new(theta0);
    let dist =
        |p: &Params| p.data().iter().zip(&target).map(|(&x, &y)| (x as f64 - y as f64).powi(2)).sum::<f64>().sqrt();
    let start = dist(&state.theta);
    let mut member = Params::zeros(l);
    for _ in 0..400 {
        let pop = es.ask(&state);
        let rewards: Vec<f32> = pop
            .members
            .iter()
            .map(|m| {
                es.perturb_into(&state.theta, state.iteration, m, &mut member);
                -(dist(&member).powi(2) as f32)
            })
            .collect();
        es.tell(&mut state, &pop, &rewards).unwrap();
    }
    let end = dist(&state.theta);
    println!("quadratic: distance {start:.3} → {end:.3}");
    assert!(end < start / 10.0, "distance {start} → {end}");
}

#[test]
fn mirrored_pairs_with_symmetric_rewards_do_not_move_theta() {
    let l = layout(50_001);
    let mut theta0 = Params::zeros(l.clone());
    evotune::es::noise::NoiseKey { seed: 3, iteration: 0, noise_id: 0, tensor_key: 0 }.fill(0, theta0.data_mut());
    let params = EsParams { population: 10, mirrored: true, awd: Awd::None, seed: 4, ..EsParams::paper() };
    let es = Strategy::new(params, Anchor::InMemory(Arc::new(theta0.clone()))).unwrap();
    let mut state = EsState::new(theta0.clone());
    for it in 0..3 {
        let pop: Population = es.ask(&state);
        // Pair k gets reward k for both signs: symmetric, yet the pairs differ from each other.
        let rewards: Vec<f32> = pop.members.iter().map(|m| (m.noise_id as f32 + it as f32).sin()).collect();
        let record = es.tell(&mut state, &pop, &rewards).unwrap();
        assert!(record.coefficients.iter().any(|&c| c != 0.0));
    }
    assert_eq!(state.iteration, 3);
    assert!(state.theta.data().iter().zip(theta0.data()).all(|(a, b)| a.to_bits() == b.to_bits()));
}

#[test]
fn a_mirrored_pair_noise_sums_to_zero() {
    let l = layout(10_000);
    let theta = Params::zeros(l.clone());
    let params = EsParams { population: 2, mirrored: true, sigma: 0.5, ..EsParams::paper() };
    let es = Strategy::new(params, Anchor::InMemory(Arc::new(theta.clone()))).unwrap();
    let pop = es.ask(&EsState::new(theta.clone()));
    let (mut plus, mut minus) = (Params::zeros(l.clone()), Params::zeros(l));
    es.perturb_into(&theta, 0, &pop.members[0], &mut plus);
    es.perturb_into(&theta, 0, &pop.members[1], &mut minus);
    assert!(plus.data().iter().zip(minus.data()).all(|(a, b)| a + b == 0.0 && *a != 0.0));
}
