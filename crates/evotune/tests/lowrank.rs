//! Low-rank (EGGROLL) population mode against the plain path: the batched forward with per-member
//! corrections vs the forward of each member's materialised weights θ + σ/√r·A·Bᵀ, on the default
//! model (skips with a note when it is absent); and the low-rank update vs its dense definition.

mod support;

use evotune::es::anchor::Anchor;
use evotune::es::lowrank::LowRankPopulation;
use evotune::es::{EsParams, EsState, Member, Perturbation, Strategy};
use evotune::model::delta::Deltas;
use evotune::model::generate::{generate, generate_with, GenerateStats};
use evotune::model::llama::SeqInput;
use evotune::model::{GenerateOptions, Layout, Llama, Params, Sampling};
use std::sync::Arc;
use support::{default_model, golden, max_diff};

fn members(n: usize) -> Vec<Member> {
    (0..n).map(|i| Member { index: i, noise_id: i as u32, sign: if i % 2 == 0 { 1.0 } else { -1.0 } }).collect()
}

fn strategy(rank: usize, sigma: f32) -> Strategy {
    let params = EsParams { sigma, seed: 11, perturbation: Perturbation::LowRank { rank }, ..EsParams::paper() };
    Strategy::new(params, no_anchor()).unwrap()
}

/// An anchor that is never read (no AWD, no drift in these tests).
fn no_anchor() -> Anchor {
    Anchor::InMemory(Arc::new(Params::zeros(Arc::new(Layout::new()))))
}

/// Tolerance on logits: 1e-4 of the logit scale. The two paths sum in different orders (one
/// matmul of W+ΔW vs x·Wᵀ plus a rank-r correction) through 30 layers.
const REL_TOL: f32 = 1e-4;

#[test]
fn batched_members_match_their_materialised_weights() {
    let Some((config, theta)) = default_model() else { return };
    let llama = Llama::new(config.clone(), theta.layout()).unwrap();
    let prompts: Vec<Vec<u32>> = golden().into_iter().take(3).map(|g| g.input_ids).collect();
    let ms = members(3);
    // σ larger than in training so that members differ visibly from θ and from each other.
    let es = strategy(2, 0.01);
    let pop: LowRankPopulation = es.low_rank_population(theta, 4, &ms).unwrap();

    // Logits at every position: one forward over all members × prompts.
    let mut caches: Vec<_> = (0..ms.len() * prompts.len()).map(|_| llama.new_cache()).collect();
    let group_of: Vec<usize> = (0..ms.len()).flat_map(|g| std::iter::repeat_n(g, prompts.len())).collect();
    let mut seqs: Vec<SeqInput> = caches
        .iter_mut()
        .enumerate()
        .map(|(i, c)| {
            let p = &prompts[i % prompts.len()];
            SeqInput { tokens: p, cache: c, logits: p.len() }
        })
        .collect();
    let batched = llama.forward_with(theta, Some(Deltas { delta: &pop, group_of: &group_of }), &mut seqs).unwrap();

    let mut dense = Params::zeros(theta.layout().clone());
    let mut worst = 0.0f32;
    let mut moved = f32::INFINITY;
    for (g, m) in ms.iter().enumerate() {
        es.perturb_into(theta, 4, m, &mut dense);
        for (pi, p) in prompts.iter().enumerate() {
            let want = llama.logits_all(&dense, p).unwrap();
            let base = llama.logits_all(theta, p).unwrap();
            let got = batched.seq(g * prompts.len() + pi);
            let scale = want.iter().fold(0.0f32, |a, &b| a.max(b.abs()));
            let (d, _) = max_diff(got, &want);
            let (from_base, _) = max_diff(&want, &base);
            worst = worst.max(d / scale);
            moved = moved.min(from_base / scale);
        }
    }
    println!("worst |batched − dense| / scale = {worst:.2e}; smallest member-vs-θ change / scale = {moved:.2e}");
    assert!(worst < REL_TOL, "batched low-rank logits differ from the dense member by {worst} of the scale");
    assert!(moved > 100.0 * worst, "the perturbation must move the logits far more than the tolerance");

    // Greedy generation: all members × prompts in one batch == each member alone, densely.
    let opts = GenerateOptions { max_new_tokens: 12, sampling: Sampling::Greedy, stop_tokens: vec![2] };
    let all: Vec<Vec<u32>> = ms.iter().flat_map(|_| prompts.iter().cloned()).collect();
    let mut stats = GenerateStats::default();
    let out = generate_with(&llama, theta, Some(Deltas { delta: &pop, group_of: &group_of }), &all, &opts, &mut stats)
        .unwrap();
    for (g, m) in ms.iter().enumerate() {
        es.perturb_into(theta, 4, m, &mut dense);
        let want = generate(&llama, &dense, &prompts, &opts).unwrap();
        assert_eq!(&out[g * prompts.len()..(g + 1) * prompts.len()], &want[..], "member {g}");
    }
    assert_eq!(stats.prompt_tokens, all.iter().map(|p| p.len()).sum::<usize>());
    assert!(stats.generated_tokens > 0 && stats.decode_tokens > 0);
}

fn synthetic() -> Params {
    let mut l = Layout::new();
    l.push("a.weight", vec![6, 4]);
    l.push("norm.weight", vec![4]);
    l.push("b.weight", vec![3, 5]);
    let mut p = Params::zeros(Arc::new(l));
    for (i, v) in p.data_mut().iter_mut().enumerate() {
        *v = (i as f32 * 0.61).cos();
    }
    p
}

#[test]
fn low_rank_update_is_the_coefficient_weighted_sum_of_perturbations() {
    // θ' = θ + (α/N)·Σₙ cₙ·signₙ·Eₙ where σ·signₙ·Eₙ = perturb(θ, n) − θ.
    let theta = synthetic();
    for rank in [1, 3] {
        let (n, sigma, alpha) = (4, 0.5, 0.3);
        let params = EsParams {
            population: n,
            sigma,
            alpha,
            seed: 5,
            perturbation: Perturbation::LowRank { rank },
            ..EsParams::paper()
        };
        let es = Strategy::new(params, no_anchor()).unwrap();
        let mut state = EsState::new(theta.clone());
        let pop = es.ask(&state);
        let rewards = [0.1, 0.9, 0.4, 0.3];
        let rec = es.tell(&mut state, &pop, &rewards).unwrap();
        let mut want: Vec<f64> = theta.data().iter().map(|&v| v as f64).collect();
        let mut member = Params::zeros(theta.layout().clone());
        for (m, c) in pop.members.iter().zip(&rec.coefficients) {
            es.perturb_into(&theta, 0, m, &mut member);
            for ((w, &p), &t) in want.iter_mut().zip(member.data()).zip(theta.data()) {
                // (p − t)/σ = sign·E; the update adds (α/N)·c·sign·E·sign²… i.e. c·(p − t)/σ.
                *w += (alpha / n as f32) as f64 * *c as f64 * (p - t) as f64 / sigma as f64;
            }
        }
        for (i, (&got, &w)) in state.theta.data().iter().zip(&want).enumerate() {
            assert!((got as f64 - w).abs() < 1e-5, "rank {rank}, element {i}: {got} vs {w}");
        }
        assert!(state.theta.data().iter().zip(theta.data()).any(|(a, b)| (a - b).abs() > 1e-3), "θ moved");
    }
}
