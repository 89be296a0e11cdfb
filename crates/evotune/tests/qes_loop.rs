//! QES iterations on the default model's own Q4_1/Q8_0 codes (library level): the population runs
//! in one batch over the shared quantized store, codes move by error feedback, and the result is
//! bit-identical for 1 and 2 threads and when the records are replayed on a fresh store.

mod support;

use evotune::es::noise::NoiseMode;
use evotune::es::qes::{QesParams, ResidualKind};
use evotune::es::shaping::{NonFinitePolicy, Shaping};
use evotune::es::Awd;
use evotune::model::generate::GenerateStats;
use evotune::model::{load_weights, LoadedWeights, Model, QuantizedParams, WeightFormat};
use evotune::run::comm::SingleProcess;
use evotune::run::qes_step::{FileCodes, QesRun, QesState};
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
    update: QesParams { sigma: 0.01, alpha: 5e-4, beta: 0.9, feedback: true, awd: Awd::None },
    residual: ResidualKind::Stored,
    window: 50,
    member_batch: 0,
};

#[test]
fn qes_iterations_are_reproducible_for_any_threads_and_by_replay() {
    let Some((model, base)) = load() else { return };
    // Conciseness: a graded reward (relative length error), so members differ from the start.
    let task = target_task("conciseness", &TaskOptions::default()).unwrap();
    let items: Vec<&Item> = task.train().iter().collect();
    let run_with = |run: &QesRun, threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            let mut state = QesState::new(base.clone(), Box::new(base.clone()), run);
            let mut out = Vec::new();
            for _ in 0..2 {
                let (rec, st, _) = state
                    .step(&model, run, task.as_ref(), &items, &mut GenerateStats::default(), &SingleProcess)
                    .unwrap();
                out.push((rec, st));
            }
            (state, out)
        })
    };
    // The replay anchors at the base codes re-read from the model file (as training does), the
    // runs above at an in-memory copy: equal states show the two give the same codes.
    let replayed = |run: &QesRun, records: &[(evotune::es::StepRecord, _)]| {
        let file = FileCodes { theta0: model.theta0.clone(), format: WeightFormat::Quantized };
        let mut state = QesState::new(base.clone(), Box::new(file), run);
        let records: Vec<_> = records.iter().map(|(r, _)| r.clone()).collect();
        state.replay(run, &records, u64::MAX).unwrap();
        state
    };
    // Both residual storages, and AWD-l1 (which reads the base codes at every code).
    // (A replayed e starts at 0, without the stored one's U(−½, ½) phase: α/σ = 1 moves codes at once.)
    let replay =
        QesRun { residual: ResidualKind::Replay, window: 1, update: QesParams { alpha: 0.01, ..RUN.update }, ..RUN };
    let awd = QesRun { update: QesParams { awd: Awd::L1 { lambda: 50.0 }, ..RUN.update }, ..RUN };
    // The stored residual runs once on 1 thread with one member per batch and once on 2 threads
    // with the whole population in one batch; the other two on 2 threads. Each is then replayed.
    for (what, run, reference) in [("stored", RUN, true), ("replay", replay, false), ("awd-l1", awd, false)] {
        let (s2, r2) = run_with(&run, 2);
        let moved: u64 = r2.iter().map(|(_, st)| st.moved).sum();
        println!(
            "{what}: codes moved over 2 iterations: {moved}; rewards {:?}",
            r2.iter().map(|(r, _)| r.rewards.clone()).collect::<Vec<_>>()
        );
        assert!(moved > 0, "{what}");
        if reference {
            let (s1, r1) = run_with(&QesRun { member_batch: 1, ..run }, 1);
            assert_eq!(r1, r2, "{what}: records and stats, 1 thread and 1 member per batch vs 2 threads");
            assert!(s1.store.checksum() == s2.store.checksum() && s1.residual == s2.residual, "{what}: 1 vs 2 threads");
        }
        // Replaying the records on a fresh store gives the same codes and residual.
        let s3 = replayed(&run, &r2);
        assert!(s3.store.checksum() == s2.store.checksum() && s3.residual == s2.residual, "{what}: replay");
    }
}
