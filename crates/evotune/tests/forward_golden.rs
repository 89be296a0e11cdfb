//! Greedy completions of the default model against HF transformers + torch (f32) on the same GGUF:
//! `scripts/golden_completions.py` wrote `tests/data/golden_completions.json`. Token ids must match
//! exactly; on a mismatch the test prints the first differing step and both logit margins there.

mod support;

use evotune::model::generate::{argmax, generate};
use evotune::model::{GenerateOptions, Llama, Sampling};
use support::{default_model, golden};

#[test]
fn greedy_matches_transformers_golden() {
    let Some((config, params)) = default_model() else { return };
    let llama = Llama::new(config.clone(), params.layout()).unwrap();
    let g = golden();
    assert!(g.len() >= 5);
    let prompts: Vec<Vec<u32>> = g.iter().map(|g| g.input_ids.clone()).collect();
    let opts = GenerateOptions { max_new_tokens: 32, sampling: Sampling::Greedy, stop_tokens: vec![2] };
    let ours = generate(&llama, params, &prompts, &opts).unwrap();
    let mut failures = Vec::new();
    for (gi, (g, o)) in g.iter().zip(&ours).enumerate() {
        if *o == g.output_ids {
            println!(
                "prompt {gi} {:?}: {} tokens identical (min torch margin {:.3})",
                g.text,
                o.len(),
                g.margins.iter().copied().fold(f32::INFINITY, f32::min)
            );
            continue;
        }
        let step = o.iter().zip(&g.output_ids).position(|(a, b)| a != b).unwrap_or(o.len().min(g.output_ids.len()));
        // Our margin at that step: top1 − top2 of our logits after prompt ++ common prefix.
        let mut ctx = g.input_ids.clone();
        ctx.extend_from_slice(&g.output_ids[..step]);
        let all = llama.logits_all(params, &ctx).unwrap();
        let row = &all[(ctx.len() - 1) * config.vocab..];
        let top = argmax(row);
        let second =
            row.iter().enumerate().filter(|(i, _)| *i as u32 != top).map(|(_, &x)| x).fold(f32::NEG_INFINITY, f32::max);
        let msg = format!(
            "prompt {gi} {:?}: first difference at step {step}: ours {:?} vs torch {:?}; torch margin {:.4}, ours {:.4}",
            g.text, o.get(step), g.output_ids.get(step), g.margins.get(step).copied().unwrap_or(f32::NAN), row[top as usize] - second
        );
        println!("{msg}");
        failures.push(msg);
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
