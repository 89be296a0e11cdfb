//! Determinism and the trajectory log: thread-count independence, θ untouched by evaluation,
//! bit-exact replay through the JSON-lines log, exact float round-trips, error messages.

use std::sync::Arc;

use evotune::es::noise::NoiseKey;
use evotune::es::{
    trajectory, Anchor, Awd, EsParams, EsState, NoiseMode, NonFinitePolicy, Shaping, StepRecord, Strategy,
};
use evotune::model::{Layout, Params};
use evotune::Error;

/// Uneven tensor sizes (odd lengths, one larger than a rayon task) so chunk edges get exercised.
fn layout() -> Arc<Layout> {
    let mut l = Layout::new();
    l.push("model.embed_tokens.weight", vec![301, 129]);
    for k in 0..3 {
        l.push(format!("model.layers.{k}.input_layernorm.weight"), vec![129]);
        l.push(format!("model.layers.{k}.self_attn.q_proj.weight"), vec![129, 129]);
        l.push(format!("model.layers.{k}.mlp.up_proj.weight"), vec![257, 129]);
    }
    l.push("model.norm.weight", vec![129]);
    Arc::new(l)
}

fn random_params(l: &Arc<Layout>, seed: u64) -> Params {
    let mut p = Params::zeros(l.clone());
    NoiseKey { seed, iteration: 0, noise_id: 0, tensor_key: 0 }.fill(0, p.data_mut());
    p
}

fn bits(p: &Params) -> Vec<u32> {
    p.data().iter().map(|x| x.to_bits()).collect()
}

/// A reward that depends on the member's weights, so coefficients are realistic.
fn reward(p: &Params) -> f32 {
    p.data().iter().step_by(97).map(|&x| x as f64).sum::<f64>().sin() as f32
}

/// Trains `iterations` steps; returns the final state, the records and θ after each step.
fn train(es: &Strategy, theta0: &Params, iterations: usize) -> (EsState, Vec<StepRecord>, Vec<Params>) {
    let mut state = EsState::new(theta0.clone());
    let mut member = Params::zeros(theta0.layout().clone());
    let (mut records, mut thetas) = (Vec::new(), Vec::new());
    for _ in 0..iterations {
        let pop = es.ask(&state);
        let rewards: Vec<f32> = pop
            .members
            .iter()
            .map(|m| {
                es.perturb_into(&state.theta, state.iteration, m, &mut member);
                reward(&member)
            })
            .collect();
        records.push(es.tell(&mut state, &pop, &rewards).unwrap());
        thetas.push(state.theta.clone());
    }
    (state, records, thetas)
}

fn params(awd: Awd, mirrored: bool) -> EsParams {
    EsParams { population: 6, sigma: 0.01, alpha: 0.005, mirrored, awd, seed: 12345, ..EsParams::paper() }
}

#[test]
fn one_and_two_threads_give_identical_theta() {
    let l = layout();
    let theta0 = random_params(&l, 1);
    let run = |threads: usize, awd: Awd| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            let es = Strategy::new(params(awd, false), Anchor::InMemory(Arc::new(theta0.clone()))).unwrap();
            let (state, records, _) = train(&es, &theta0, 4);
            (bits(&state.theta), records, es.drift(&state.theta).unwrap())
        })
    };
    for awd in [Awd::None, Awd::L2 { lambda: 10.0 }, Awd::L1 { lambda: 0.1 }] {
        let (a, ra, da) = run(1, awd);
        let (b, rb, db) = run(2, awd);
        assert_eq!(ra, rb, "{awd:?}: records differ");
        assert!(a == b, "{awd:?}: θ differs between 1 and 2 threads");
        assert_eq!(da, db, "{awd:?}: drift differs");
        assert!(da.total > 0.0);
    }
}

#[test]
fn perturb_into_overwrites_whatever_the_arena_held() {
    // The full-rank loop reuses one member arena: member m's θ + σε must not depend on what the
    // arena held before (the previous member's weights, or zeros).
    let l = layout();
    let theta = random_params(&l, 2);
    let es = Strategy::new(params(Awd::None, true), Anchor::InMemory(Arc::new(theta.clone()))).unwrap();
    let mut reused = Params::zeros(l.clone());
    for it in 0..20u64 {
        let pop = es.ask(&EsState { theta: theta.clone(), iteration: it });
        for m in &pop.members {
            es.perturb_into(&theta, it, m, &mut reused);
            let mut fresh = Params::zeros(l.clone());
            es.perturb_into(&theta, it, m, &mut fresh);
            assert_eq!(bits(&reused), bits(&fresh), "iteration {it} member {}", m.index);
            assert!(reused.data().iter().zip(theta.data()).any(|(a, b)| a != b));
        }
    }
}

#[test]
fn perturb_into_is_theta_plus_sigma_epsilon_and_adopts_the_layout() {
    let l = layout();
    let theta = random_params(&l, 3);
    let es = Strategy::new(params(Awd::None, true), Anchor::InMemory(Arc::new(theta.clone()))).unwrap();
    let pop = es.ask(&EsState::new(theta.clone()));
    let mut out = Params::zeros(Arc::new(Layout::new())); // wrong layout: replaced
    es.perturb_into(&theta, 5, &pop.members[1], &mut out);
    for (id, info) in l.tensors().iter().enumerate() {
        let key = NoiseKey { seed: 12345, iteration: 5, noise_id: 0, tensor_key: id as u64 };
        for i in [0, 1, info.len / 2, info.len - 1] {
            let sigma_times_sign = -0.01f32; // σ = 0.01, member 1 has sign −1
            let want = theta.tensor(id)[i] + sigma_times_sign * key.at(i as u64);
            assert_eq!(out.tensor(id)[i].to_bits(), want.to_bits(), "{} element {i}", info.name);
        }
    }
}

#[test]
fn replay_through_the_log_equals_live_training() {
    let l = layout();
    let theta0 = random_params(&l, 4);
    let dir = tempfile::tempdir().unwrap();
    for (awd, mirrored, source) in
        [(Awd::None, false, false), (Awd::L2 { lambda: 10.0 }, true, true), (Awd::L1 { lambda: 0.2 }, false, true)]
    {
        let anchor = || {
            if source {
                Anchor::Source(Arc::new(theta0.clone()))
            } else {
                Anchor::InMemory(Arc::new(theta0.clone()))
            }
        };
        let es = Strategy::new(params(awd, mirrored), anchor()).unwrap();
        let (state, records, thetas) = train(&es, &theta0, 6);
        let path = dir.path().join("trajectory.jsonl");
        trajectory::write(std::fs::File::create(&path).unwrap(), &records).unwrap();
        let read = trajectory::read(&path).unwrap();
        assert_eq!(read, records);
        // A fresh strategy (as after a restart) replays to every K.
        let es2 = Strategy::new(params(awd, mirrored), anchor()).unwrap();
        for k in [0u64, 1, 3, 6] {
            let replayed = trajectory::replay(&es2, theta0.clone(), &read, k).unwrap();
            assert_eq!(replayed.iteration, k);
            let live = if k == 0 { &theta0 } else { &thetas[k as usize - 1] };
            assert!(bits(&replayed.theta) == bits(live), "{awd:?}: replay to {k} differs from live θ_{k}");
        }
        // Resuming from θ_3 with the rest of the log also lands on θ_6.
        let mut resumed = EsState { theta: thetas[2].clone(), iteration: 3 };
        trajectory::replay_onto(&es2, &mut resumed, &read, u64::MAX).unwrap();
        assert!(bits(&resumed.theta) == bits(&state.theta));
    }
}

#[test]
fn floats_round_trip_exactly_through_json() {
    // Every finite f32 pattern class: random bit patterns, subnormals, extremes, typical z-scores.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut values: Vec<f32> = Vec::new();
    while values.len() < 200_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let v = f32::from_bits(x as u32);
        if v.is_finite() {
            values.push(v);
        }
        values.push(((x >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 4.0);
    }
    values.extend([f32::MIN_POSITIVE, f32::MAX, f32::MIN, f32::EPSILON, 1e-45, -0.0, 0.1, 1.0 / 3.0]);
    for chunk in values.chunks(1000) {
        let record = StepRecord {
            iteration: 7,
            members: (0..chunk.len())
                .map(|i| evotune::es::Member { index: i, noise_id: i as u32, sign: 1.0 })
                .collect(),
            rewards: chunk.to_vec(),
            coefficients: chunk.to_vec(),
            awd_lambda: None,
            drift: None,
        };
        let back = trajectory::parse_line(std::path::Path::new("x"), 1, &trajectory::to_line(&record)).unwrap();
        for (a, b) in chunk.iter().zip(&back.coefficients).chain(chunk.iter().zip(&back.rewards)) {
            assert_eq!(a.to_bits(), b.to_bits(), "{a:e} came back as {b:e}");
        }
    }
    // Non-finite rewards are written as strings and come back.
    let record = StepRecord {
        iteration: 0,
        members: vec![],
        rewards: vec![f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1.5],
        coefficients: vec![],
        awd_lambda: None,
        drift: None,
    };
    let line = trajectory::to_line(&record);
    assert!(line.contains("\"NaN\"") && line.contains("\"-inf\""), "{line}");
    let back = trajectory::parse_line(std::path::Path::new("x"), 1, &line).unwrap();
    assert!(back.rewards[0].is_nan());
    assert_eq!(&back.rewards[1..], &[f32::INFINITY, f32::NEG_INFINITY, 1.5]);
}

#[test]
fn nonfinite_rewards_rank_worst_or_fail() {
    let l = layout();
    let theta0 = random_params(&l, 5);
    let strict = Strategy::new(params(Awd::None, false), Anchor::InMemory(Arc::new(theta0.clone()))).unwrap();
    let mut state = EsState::new(theta0.clone());
    let pop = strict.ask(&state);
    let rewards = [0.1, 0.2, f32::NAN, 0.3, 0.0, 0.5];
    match strict.tell(&mut state, &pop, &rewards) {
        Err(Error::NonFiniteReward { member: 2, .. }) => {}
        other => panic!("expected NonFiniteReward for member 2, got {other:?}"),
    }
    assert_eq!(bits(&state.theta), bits(&theta0), "θ moved on a failed tell");
    assert_eq!(state.iteration, 0);
    let lenient =
        EsParams { nonfinite: NonFinitePolicy::Worst, shaping: Shaping::CentredRank, ..params(Awd::None, false) };
    let es = Strategy::new(lenient, Anchor::InMemory(Arc::new(theta0))).unwrap();
    let record = es.tell(&mut state, &pop, &rewards).unwrap();
    assert_eq!(record.coefficients[2], -0.5);
    assert!(matches!(es.tell(&mut state, &pop, &rewards), Err(Error::StepOutOfOrder { expected: 1, found: 0 })));
    assert!(matches!(
        es.tell(&mut EsState::new(random_params(&l, 5)), &pop, &rewards[..5]),
        Err(Error::RewardCount { expected: 6, got: 5 })
    ));
    // A record from a run with another population size is refused by apply (and by replay).
    let mut short = record.clone();
    short.iteration = 1;
    short.members.pop();
    short.coefficients.pop();
    assert!(matches!(es.apply(&mut state, &short), Err(Error::BadStep { iteration: 1, .. })));
    assert_eq!(state.iteration, 1);
}

#[test]
fn bad_configs_are_rejected() {
    let anchor = || Anchor::InMemory(Arc::new(Params::zeros(layout())));
    let bad = |p: EsParams| Strategy::new(p, anchor()).is_err();
    assert!(bad(EsParams { population: 5, mirrored: true, ..EsParams::paper() }));
    assert!(bad(EsParams { awd: Awd::L2 { lambda: 3000.0 }, ..EsParams::paper() }));
    assert!(bad(EsParams { sigma: f32::NAN, ..EsParams::paper() }));
    assert!(!bad(EsParams { noise: NoiseMode::SharedShape, ..EsParams::paper() }));
}

#[test]
fn trajectory_errors_name_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.jsonl");
    let good = trajectory::to_line(&StepRecord {
        iteration: 0,
        members: vec![],
        rewards: vec![],
        coefficients: vec![],
        awd_lambda: None,
        drift: None,
    });
    std::fs::write(&path, format!("{good}\n\n{{\"iteration\": 1, \"members\": \n")).unwrap();
    let err = trajectory::read(&path).unwrap_err();
    assert!(matches!(err, Error::Trajectory { line: 3, .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("t.jsonl:3: trajectory"), "{msg}");
    // A gap in the iterations is reported on its line too.
    let skip = trajectory::to_line(&StepRecord {
        iteration: 2,
        members: vec![],
        rewards: vec![],
        coefficients: vec![],
        awd_lambda: None,
        drift: None,
    });
    std::fs::write(&path, format!("{good}\n{skip}\n")).unwrap();
    let msg = trajectory::read(&path).unwrap_err().to_string();
    assert!(msg.contains("t.jsonl:2:") && msg.contains("expected 1"), "{msg}");
}

#[test]
fn shared_shape_noise_perturbs_equal_shapes_equally() {
    let l = layout();
    let theta = Params::zeros(l.clone());
    let p = EsParams { noise: NoiseMode::SharedShape, ..params(Awd::None, false) };
    let es = Strategy::new(p, Anchor::InMemory(Arc::new(theta.clone()))).unwrap();
    let mut out = Params::zeros(l.clone());
    es.perturb_into(&theta, 0, &es.ask(&EsState::new(theta.clone())).members[0], &mut out);
    let q0 = out.get("model.layers.0.self_attn.q_proj.weight").unwrap();
    let q2 = out.get("model.layers.2.self_attn.q_proj.weight").unwrap();
    let up = out.get("model.layers.0.mlp.up_proj.weight").unwrap();
    assert_eq!(q0, q2);
    assert_ne!(&q0[..100], &up[..100]);
}
