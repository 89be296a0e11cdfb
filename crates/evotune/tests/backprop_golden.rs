//! The whole model's gradient of a sum of token log-probabilities against PyTorch's, computed in
//! float64 by `scripts/grad_golden.py` on the tiny Llama 3 (rope scaling, untied head) and Qwen3
//! (per-head q/k norms, tied embeddings) models: every parameter, f64 and f32 passes.

use std::path::Path;

use evotune::model::backprop::{backward, forward, TrainSeq};
use evotune::model::{self, Params};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");

#[derive(serde::Deserialize)]
struct Case {
    family: String,
    tokens: Vec<u32>,
    scored_from: usize,
    temperature: f64,
    loss: f64,
}

#[derive(serde::Deserialize)]
struct Golden {
    cases: Vec<Case>,
}

/// ∂(Σ logp)/∂θ by our pass in float type R.
fn our_gradient<R: evotune::model::backprop::Real>(m: &model::Model, theta: &Params, case: &Case) -> (f64, Vec<f64>) {
    let w: Vec<R> = theta.data().iter().map(|&x| R::from_f64(x as f64)).collect();
    let seqs = [TrainSeq { tokens: &case.tokens, scored_from: case.scored_from }];
    let (logp, tape) = forward(&m.llama, &m.layout, &w, &seqs, case.temperature, true).unwrap();
    let mut grad = vec![R::ZERO; w.len()];
    backward(&m.llama, &m.layout, &w, tape.unwrap(), &vec![R::ONE; logp.len()], &mut grad);
    (logp.iter().map(|x| x.to_f64()).sum(), grad.iter().map(|x| x.to_f64()).collect())
}

#[test]
fn gradients_match_pytorch() {
    let golden: Golden = serde_json::from_slice(&std::fs::read(format!("{DATA}/grad/golden.json")).unwrap()).unwrap();
    assert_eq!(golden.cases.len(), 2);
    for case in &golden.cases {
        let (m, theta) = model::load(&format!("{DATA}/tiny/{}/hf", case.family)).unwrap();
        let bytes = std::fs::read(Path::new(DATA).join(format!("grad/{}.safetensors", case.family))).unwrap();
        let torch = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        for (precision, (loss, grad)) in
            [("f64", our_gradient::<f64>(&m, &theta, case)), ("f32", our_gradient::<f32>(&m, &theta, case))]
        {
            let tol = if precision == "f64" { 1e-5 } else { 1e-4 };
            assert!((loss - case.loss).abs() < tol * case.loss.abs(), "{}: loss {loss} vs {}", case.family, case.loss);
            let mut worst = 0.0f64;
            for info in m.layout.tensors() {
                if m.config.tied_embeddings && info.name == "lm_head.weight" {
                    continue;
                }
                let t = torch.tensor(&info.name).unwrap_or_else(|_| panic!("golden lacks {}", info.name));
                assert_eq!(t.shape(), &info.shape[..], "{}", info.name);
                let theirs: Vec<f64> =
                    t.data().chunks(4).map(|b| f32::from_le_bytes(b.try_into().unwrap()) as f64).collect();
                let ours = &grad[info.range()];
                let scale = theirs.iter().fold(0.0f64, |a, b| a.max(b.abs()));
                assert!(scale > 0.0, "{}: zero golden gradient", info.name);
                let err = ours.iter().zip(&theirs).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max) / scale;
                worst = worst.max(err);
                assert!(err < tol, "{} {precision}: {} relative to the largest entry", info.name, err);
            }
            eprintln!(
                "{} {precision}: loss {loss:.9} (torch {:.9}), worst tensor error {worst:.1e}",
                case.family, case.loss
            );
        }
    }
}
