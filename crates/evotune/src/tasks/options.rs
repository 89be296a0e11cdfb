//! Task options as the user writes them (config.toml `[task_options]` or `--task-opt key=value`
//! flags). Every field has a default, so an empty table is valid and the resolved config can write
//! every value out.

use serde::{Deserialize, Serialize};

/// An arithmetic operation of the `arith` task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArithOp {
    Add,
    Sub,
    Mul,
}

impl ArithOp {
    pub fn symbol(self) -> char {
        match self {
            ArithOp::Add => '+',
            ArithOp::Sub => '-',
            ArithOp::Mul => '*',
        }
    }
    pub fn apply(self, a: i64, b: i64) -> i64 {
        match self {
            ArithOp::Add => a + b,
            ArithOp::Sub => a - b,
            ArithOp::Mul => a * b,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TaskOptions {
    /// Seed of generated tasks, of the train/test split and of minibatches.
    pub seed: u64,
    /// Training items (generated tasks: how many to make; files: at most this many, 0 = all).
    pub train_size: usize,
    /// Test items (generated tasks: how many to make; files: at most this many, 0 = all).
    pub test_size: usize,
    /// Files: fraction of items that go to the test split (by a seeded hash of the item).
    pub test_fraction: f64,
    /// `arith`: operations drawn uniformly per item.
    pub arith_ops: Vec<ArithOp>,
    /// `arith`: operands are drawn uniformly from `arith_min..=arith_max`.
    pub arith_min: i64,
    pub arith_max: i64,
    /// JSONL generation tasks: `exact`, `numeric`, `regex`, `contains`, `hash` or `command`.
    pub reward: String,
    /// `numeric`/`hash`: a number is right when |x − answer| ≤ tolerance.
    pub tolerance: f64,
    /// `regex`: the pattern; `{answer}` in it is replaced by the escaped answer. Empty: the
    /// item's answer is itself the pattern.
    pub pattern: String,
    /// `command`: a shell command (run with `sh -c`) reading JSON lines {prompt, completion,
    /// answer} on stdin and writing one reward per line on stdout.
    pub command: String,
    /// `command`: seconds before the program is killed.
    pub command_timeout_s: f64,
    /// Items per ES iteration (0 = the whole training split).
    pub minibatch: usize,
    /// Maximum new tokens per completion (0 = the task's own default).
    pub max_new_tokens: usize,
    /// KL probe: how many prompts and how many sampled tokens per prompt.
    pub kl_prompts: usize,
    pub kl_tokens: usize,
    /// KL probe: sample the base continuations at temperature 1 (seeded) instead of greedily.
    pub kl_sample: bool,
}

impl Default for TaskOptions {
    fn default() -> Self {
        TaskOptions {
            seed: 0,
            train_size: 200,
            test_size: 200,
            test_fraction: 0.2,
            arith_ops: vec![ArithOp::Add],
            arith_min: 10,
            arith_max: 99,
            reward: "exact".to_string(),
            tolerance: 1e-6,
            pattern: String::new(),
            command: String::new(),
            command_timeout_s: 30.0,
            minibatch: 0,
            max_new_tokens: 0,
            kl_prompts: 16,
            kl_tokens: 32,
            kl_sample: true,
        }
    }
}

impl TaskOptions {
    /// `max_new_tokens` if set, else the task's default.
    pub fn max_new_tokens_or(&self, default: usize) -> usize {
        if self.max_new_tokens > 0 {
            self.max_new_tokens
        } else {
            default
        }
    }
}
