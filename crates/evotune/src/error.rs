//! One error type for the whole engine, grouped by area.
//!
//! Every variant names the input that caused it (a file, a field, a tensor, a member) and what was
//! expected versus found, so that the CLI can print the chain on one line and the user knows what
//! to fix. Nothing in the library panics on bad input; it returns one of these.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    // === I/O ===
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },

    // === Model files ===
    #[error("{path}: not a GGUF file (magic {found:?}, expected \"GGUF\")")]
    NotGguf { path: PathBuf, found: [u8; 4] },
    #[error("{path}: {problem}")]
    CorruptModel { path: PathBuf, problem: String },
    #[error("{path}: tensor `{tensor}`: type {found} is not supported (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q6_K)")]
    UnsupportedTensorType { path: PathBuf, tensor: String, found: String },
    #[error("{path}: tensor `{tensor}`: {problem} on the quantized path; {instead}")]
    QuantizedPath { path: PathBuf, tensor: String, problem: String, instead: String },
    #[error(
        "{path}: architecture `{found}` is not supported{why} (supported: llama including Llama 3.x and \
         Mistral, qwen2, qwen3)"
    )]
    UnsupportedArchitecture { path: PathBuf, found: String, why: String },
    #[error("{path}: metadata key `{key}`: {problem}")]
    BadMetadata { path: PathBuf, key: String, problem: String },
    #[error("{path}: tensor `{tensor}`: {location} is {value}; weights must be finite (the file is corrupt)")]
    NonFiniteWeight { path: PathBuf, tensor: String, location: String, value: f32 },
    #[error("{path}: tensor `{tensor}` is missing")]
    MissingTensor { path: PathBuf, tensor: String },
    #[error("{path}: tensor `{tensor}`: shape {found:?}, expected {expected:?}")]
    TensorShape { path: PathBuf, tensor: String, expected: Vec<usize>, found: Vec<usize> },
    #[error("model `{name}` could not be found or fetched: {problem}")]
    ModelFetch { name: String, problem: String },

    // === Tokenizer and chat template ===
    #[error("{path}: tokenizer: {problem}")]
    Tokenizer { path: PathBuf, problem: String },
    #[error("chat template: {problem}")]
    ChatTemplate { problem: String },

    // === Inference ===
    #[error("empty prompt (sequence {index} has no tokens)")]
    EmptyPrompt { index: usize },
    #[error("sequence {index}: {len} tokens exceed the model's context of {max}")]
    ContextOverflow { index: usize, len: usize, max: usize },
    #[error("sequence {index}: token id {token} is outside the vocabulary (size {vocab})")]
    TokenOutOfRange { index: usize, token: u32, vocab: usize },
    #[error("sequence {index}: KV cache {problem}")]
    KvCacheMismatch { index: usize, problem: String },
    #[error("sequence {index}: {problem}")]
    ForwardInput { index: usize, problem: String },
    #[error("model layout: tensor `{tensor}` is missing (the {arch} forward pass needs it)")]
    LayoutMissingTensor { tensor: String, arch: String },
    #[error("model layout: tensor `{tensor}`: shape {found:?}, expected {expected:?} from the model config")]
    LayoutTensorShape { tensor: String, expected: Vec<usize>, found: Vec<usize> },
    #[error("model config: `{field}`: {problem}")]
    BadModelConfig { field: &'static str, problem: String },
    #[error(
        "sequence {sequence}: the logits at step {step} are not finite (NaN or infinity); the weights are \
         corrupt or have diverged"
    )]
    NonFiniteLogits { step: usize, sequence: usize },
    #[error("candle reference model: {problem}")]
    CandleRef { problem: String },

    // === Evolution strategies ===
    #[error("member {member}: reward is {value} (not finite); set `nonfinite_reward = \"worst\"` to rank such members last instead")]
    NonFiniteReward { member: usize, value: f32 },
    #[error(
        "iteration {iteration}, member {member}: {why}, so its reward is undefined; set \
         `nonfinite_reward = \"worst\"` to rank such members last instead, or lower sigma"
    )]
    MemberDiverged { iteration: u64, member: usize, why: String },
    #[error("{got} rewards for a population of {expected}")]
    RewardCount { expected: usize, got: usize },
    #[error("invalid ES setting `{field}`: {problem}")]
    EsConfig { field: &'static str, problem: String },
    #[error(
        "ES step for iteration {found} applied to a state at iteration {expected} (steps must be applied in order)"
    )]
    StepOutOfOrder { expected: u64, found: u64 },
    #[error("ES step of iteration {iteration}: {problem}")]
    BadStep { iteration: u64, problem: String },
    #[error("{path}:{line}: trajectory: {problem}")]
    Trajectory { path: PathBuf, line: usize, problem: String },

    // === Tasks ===
    #[error("{path}:{line}: field `{field}`: {problem}")]
    BadTaskLine { path: PathBuf, line: usize, field: &'static str, problem: String },
    #[error("task `{task}`: {problem}")]
    Task { task: String, problem: String },
    #[error("reward command `{command}`: {problem}")]
    RewardCommand { command: String, problem: String },

    // === Distributed runs ===
    #[error("iteration {iteration}: rank {rank}'s weights differ from rank 0's, first in tensor `{tensor}` (replicated updates diverged)")]
    RankDivergence { iteration: u64, rank: usize, tensor: String },
    #[error(
        "evaluation of iteration {iteration}: rank {rank} sent {got} numbers for {task} where {expected} were expected"
    )]
    RankResults { iteration: u64, rank: usize, task: String, got: usize, expected: usize },

    // === Runs ===
    #[error("{path}: config: {problem}")]
    Config { path: PathBuf, problem: String },
    #[error("{path}: {problem}")]
    RunDir { path: PathBuf, problem: String },
    #[error("{}: interrupted after iteration {iteration}; nothing partial was written, continue with `evotune train --resume {}`", dir.display(), dir.display())]
    Interrupted { dir: PathBuf, iteration: u64 },
}

impl Error {
    /// Wraps an `std::io::Error` with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}

/// `.with_path(p)` on I/O results: the error then names the file.
pub trait IoResultExt<T> {
    fn with_path(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoResultExt<T> for std::io::Result<T> {
    fn with_path(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}
