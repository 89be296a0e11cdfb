//! Tasks on the real default model. Each test skips with a printed note when the model file or the
//! runtime is unavailable (`EVOTUNE_MODEL`, else ~/.cache/evotune/SmolLM2-135M-Instruct.Q4_1.gguf).

use std::path::PathBuf;

use evotune::model::{Model, Params};
use evotune::tasks::eval::{choice_logliks, evaluate_prior, evaluate_target, target_rewards};
use evotune::tasks::multiple_choice::McItem;
use evotune::tasks::{prior_task, suites, target_task, Item, PriorTask, TaskOptions};

fn model_path() -> Option<PathBuf> {
    evotune::model::fetch::default_model_for_tests()
}

/// The default model, or `None` (with a note) when the file or the runtime is missing.
fn load() -> Option<(Model, Params)> {
    let Some(path) = model_path() else {
        eprintln!("SKIP: model file not found (set EVOTUNE_MODEL)");
        return None;
    };
    let spec = path.to_string_lossy().into_owned();
    match std::panic::catch_unwind(|| evotune::model::load(&spec)) {
        Ok(Ok(m)) => Some(m),
        Ok(Err(e)) => {
            eprintln!("SKIP: model runtime could not load {spec}: {e}");
            None
        }
        Err(_) => {
            eprintln!("SKIP: model runtime not available yet (load panicked)");
            None
        }
    }
}

fn mc(question: &str, choices: &[&str], answer: usize) -> McItem {
    McItem { question: question.into(), choices: choices.iter().map(|s| s.to_string()).collect(), answer, system: None }
}

#[test]
fn loglik_picks_the_right_choice_on_known_items() {
    let Some((model, params)) = load() else { return };
    let items = vec![
        mc("What is the capital of France?", &["Berlin", "Paris", "Madrid", "Rome"], 1),
        mc("What is the capital of Japan?", &["Tokyo", "Beijing", "Seoul", "Bangkok"], 0),
        mc("What is the capital of Italy?", &["Madrid", "Athens", "Rome", "Lisbon"], 2),
        mc("What is the opposite of \"hot\"?", &["warm", "big", "fast", "cold"], 3),
        mc("What is the capital of Germany?", &["Vienna", "Munich", "Berlin", "Warsaw"], 2),
    ];
    let lls = choice_logliks(&model, &params, &items).unwrap();
    for (it, ll) in items.iter().zip(&lls) {
        let best = ll.iter().enumerate().fold(0, |b, (j, &v)| if v > ll[b] { j } else { b });
        eprintln!(
            "{:<45} {:?} -> {}",
            it.question,
            ll.iter().map(|v| format!("{v:.2}")).collect::<Vec<_>>(),
            it.choices[best]
        );
        assert_eq!(best, it.answer, "{}: log-likelihoods {ll:?}", it.question);
        assert!(ll.iter().all(|v| v.is_finite() && *v < 0.0));
    }
}

#[test]
fn builtin_suites_score_above_chance() {
    let Some((model, params)) = load() else { return };
    let opts = TaskOptions::default();
    for name in suites::multiple_choice_names() {
        let prior = prior_task(name, &opts).unwrap();
        let PriorTask::MultipleChoice { items, .. } = &prior else { panic!() };
        let chance = items.iter().map(|i| 1.0 / i.choices.len() as f64).sum::<f64>() / items.len() as f64;
        let s = evaluate_prior(&model, &params, &prior).unwrap();
        eprintln!(
            "suite {name:<10} items {:>3}  accuracy {:.3} (chance {chance:.3})  margin {:+.3} nats",
            items.len(),
            s.accuracy,
            s.metrics["logprob_margin"]
        );
        assert!(s.accuracy > chance + 0.1, "{name}: accuracy {} vs chance {chance}", s.accuracy);
    }
}

#[test]
fn arith_rewards_and_kl_probe_on_the_base_model() {
    let Some((model, params)) = load() else { return };
    let opts = TaskOptions { train_size: 8, test_size: 16, ..TaskOptions::default() };
    let task = target_task("arith", &opts).unwrap();
    let items: Vec<&Item> = task.train().iter().collect();
    let r = target_rewards(&model, &params, task.as_ref(), &items).unwrap();
    assert_eq!(r.len(), 8);
    assert!(r.iter().all(|r| r.value.is_finite() && (0.0..=1.1 + 1e-6).contains(&r.value)));
    let s = evaluate_target(&model, &params, task.as_ref()).unwrap();
    eprintln!(
        "arith base: accuracy {:.3}, mean reward {:.3} on {} items",
        s.accuracy, s.mean_reward, s.metrics["items"]
    );

    let mut kl = prior_task("kl", &TaskOptions { kl_prompts: 4, kl_tokens: 8, ..TaskOptions::default() }).unwrap();
    kl.prepare(&model, &params).unwrap();
    let base = evaluate_prior(&model, &params, &kl).unwrap();
    eprintln!("KL(base‖base) = {:e} over {} tokens", base.metrics["kl"], base.metrics["kl_tokens"]);
    assert!(base.metrics["kl"].abs() < 1e-6, "{:?}", base.metrics);
    // A deterministic perturbation of every weight moves the distributions.
    let mut moved = params.clone();
    for (i, w) in moved.data_mut().iter_mut().enumerate() {
        *w += 0.01 * (((i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40) as f32 / (1u64 << 24) as f32 - 0.5);
    }
    let after = evaluate_prior(&model, &moved, &kl).unwrap();
    eprintln!("KL(base‖perturbed) = {:.5}", after.metrics["kl"]);
    assert!(after.metrics["kl"] > 1e-4, "{:?}", after.metrics);
}
