//! A training run: its configuration, its directory, the loop, resume, replay and the report data.
//!
//! ```text
//! RUN/config.toml       resolved configuration (every default written out)
//! RUN/trajectory.jsonl  one line per iteration: member noise ids, rewards, coefficients
//! RUN/metrics.jsonl     one line per iteration (reward stats, timings, drift) + eval lines
//! RUN/checkpoints/      optional safetensors snapshots (HF tensor names)
//! RUN/grpo_state.bin    GRPO only: θ, AdamW's moments and the step, what resume starts from
//! RUN/.lock             held by the process writing the run (its pid inside)
//! RUN/attribution.jsonl `evotune attribute`: one line per reverted parameter group
//! ```

pub mod attribution;
pub mod bench;
pub mod bench_grpo;
pub mod bench_qes;
pub mod comm;
pub mod config;
pub mod dir;
pub mod drift_budget;
pub mod eval_split;
pub mod fitness;
pub mod grpo_step;
pub mod memory;
pub mod metrics;
pub mod qes_step;
pub mod replay;
pub mod report;
pub mod train;

pub use config::{Method, PartialConfig, RunConfig};
pub use dir::RunDir;
pub use metrics::{EvalLine, IterationLine, MetricsLine};
pub use train::{train, Progress, RunSummary};
