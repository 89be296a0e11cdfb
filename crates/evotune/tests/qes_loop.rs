//! QES iterations on the default model's own Q4_1/Q8_0 codes (library level): the population runs
//! in one batch over the shared quantized store, codes move by error feedback, and the result is
//! bit-identical for 1 and 2 threads and when the records are replayed on a fresh store.

mod support;

use evotune::es::noise::NoiseMode;
use evotune::es::qes::{QesParams, Residual};
use evotune::es::shaping::{NonFinitePolicy, Shaping};
use evotune::model::generate::GenerateStats;
use evotune::model::{load_weights, LoadedWeights, Model, QuantizedParams, WeightFormat};
use evotune::run::qes_step::{qes_step, replay_step, QesRun};
use evotune::tasks::{target_task, Item, TaskOptions};

fn load() -> Option<(Model, QuantizedParams)> {
    let path = support::model_path()?;
    match load_weights(path.to_str().unwrap(), WeightFormat::Quantized).unwrap() {
        (m, LoadedWeights::Quantized(q), _) => Some((m, q)),
        _ => unreachable!(),
    }
}

const RUN: QesRun = QesRun {
    population: 4,
    mirrored: true,
    shaping: Shaping::Zscore,
    nonfinite: NonFinitePolicy::Error,
    seed: 17,
    noise: NoiseMode::Iid,
    update: QesParams { sigma: 0.01, alpha: 5e-4, beta: 0.9, feedback: true },
};

#[test]
fn qes_iterations_are_reproducible_for_any_threads_and_by_replay() {
    let Some((model, base)) = load() else { return };
    // Conciseness: a graded reward (relative length error), so members differ from the start.
    let task = target_task("conciseness", &TaskOptions::default()).unwrap();
    let items: Vec<&Item> = task.train().iter().collect();
    let run_with = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            let mut store = base.clone();
            let mut e = Residual::init(&store, RUN.seed, true);
            let mut out = Vec::new();
            for t in 0..2 {
                let (rec, st, _) =
                    qes_step(&model, &mut store, &mut e, &RUN, t, task.as_ref(), &items, &mut GenerateStats::default())
                        .unwrap();
                out.push((rec, st));
            }
            (store, e, out)
        })
    };
    let (s1, e1, r1) = run_with(1);
    let (s2, e2, r2) = run_with(2);
    let moved: u64 = r1.iter().map(|(_, st)| st.moved).sum();
    println!(
        "codes moved over 2 iterations: {moved}; rewards {:?}",
        r1.iter().map(|(r, _)| r.rewards.clone()).collect::<Vec<_>>()
    );
    assert!(moved > 0);
    assert_eq!(
        r1.iter().map(|(r, s)| (r.clone(), *s)).collect::<Vec<_>>(),
        r2.iter().map(|(r, s)| (r.clone(), *s)).collect::<Vec<_>>()
    );
    assert!(s1.dequantize() == s2.dequantize() && e1 == e2, "1 vs 2 threads");
    // Replaying the records on a fresh store gives the same codes and residual.
    let mut s3 = base.clone();
    let mut e3 = Residual::init(&s3, RUN.seed, true);
    for (rec, st) in &r1 {
        assert_eq!(replay_step(&mut s3, &mut e3, &RUN, rec), *st);
    }
    assert!(s3.dequantize() == s1.dequantize() && e3 == e1, "replay");
}
