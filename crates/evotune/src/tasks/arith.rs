//! `arith`: "What is A + B? Answer with only the number." — the default demo target.
//!
//! reward = 0.1·format + 1.0·answer, with
//! - format = 1 when the completion, trimmed (one trailing full stop allowed), is exactly one
//!   number;
//! - answer = 1 when the **last** number in the completion equals A ∘ B. The last, not the first:
//!   a small model that does not obey "only the number" usually restates the question first
//!   ("47 + 38 = 85"), so the first number is an operand and the conclusion comes last. This is
//!   also the rule of the reference PyTorch loop in `reference/drift-probe.md`.
//!
//! Correct ⇔ answer = 1. Operands are uniform in `arith_min..=arith_max`, the operation uniform
//! over `arith_ops`; the test items never repeat a training question.

use std::collections::HashSet;

use crate::error::{Error, Result};
use crate::tasks::countdown::check_lengths;
use crate::tasks::numbers::{is_bare_number, last_number, parse_number};
use crate::tasks::rng::Rng;
use crate::tasks::{ArithOp, Item, Reward, Task, TaskOptions};
use crate::tokenizer::Prompt;

const MAX_NEW_TOKENS: usize = 24;

/// Reward of one completion against the correct result.
pub fn reward(completion: &str, answer: f64) -> Reward {
    let format = if is_bare_number(completion) { 1.0 } else { 0.0 };
    let right = last_number(completion) == Some(answer);
    let answer = if right { 1.0 } else { 0.0 };
    Reward { value: 0.1 * format + answer, correct: right }
}

pub fn question(a: i64, op: ArithOp, b: i64) -> String {
    format!("What is {a} {} {b}? Answer with only the number.", op.symbol())
}

pub struct Arith {
    train: Vec<Item>,
    test: Vec<Item>,
    max_new_tokens: usize,
    minibatch: usize,
}

impl Arith {
    pub fn new(opts: &TaskOptions) -> Result<Arith> {
        let bad = |problem: String| Error::Task { task: "arith".into(), problem };
        if opts.arith_ops.is_empty() {
            return Err(bad("`arith_ops` is empty; give at least one of add, sub, mul".into()));
        }
        if opts.arith_min > opts.arith_max {
            return Err(bad(format!("`arith_min` {} is above `arith_max` {}", opts.arith_min, opts.arith_max)));
        }
        if opts.arith_min.abs() > 1_000_000_000 || opts.arith_max.abs() > 1_000_000_000 {
            return Err(bad("operands are limited to ±1e9 so that products stay exact".into()));
        }
        let span = (opts.arith_max - opts.arith_min + 1) as u128;
        let distinct = span * span * opts.arith_ops.len() as u128;
        let wanted = (opts.train_size + opts.test_size) as u128;
        if wanted > distinct {
            return Err(bad(format!(
                "{wanted} distinct questions wanted but the range and operations allow only {distinct}"
            )));
        }
        let mut rng = Rng::new(opts.seed ^ 0xa817_0000);
        let mut seen = HashSet::new();
        let mut all = Vec::with_capacity(wanted as usize);
        while all.len() < wanted as usize {
            let a = rng.range(opts.arith_min, opts.arith_max);
            let b = rng.range(opts.arith_min, opts.arith_max);
            let op = opts.arith_ops[rng.index(opts.arith_ops.len())];
            if seen.insert((a, op, b)) {
                all.push(Item {
                    prompt: Prompt::Chat { system: None, user: question(a, op, b) },
                    answer: op.apply(a, b).to_string(),
                });
            }
        }
        let test = all.split_off(opts.train_size);
        Ok(Arith {
            train: all,
            test,
            max_new_tokens: opts.max_new_tokens_or(MAX_NEW_TOKENS),
            minibatch: opts.minibatch,
        })
    }
}

impl Task for Arith {
    fn name(&self) -> &str {
        "arith"
    }
    fn max_new_tokens(&self) -> usize {
        self.max_new_tokens
    }
    fn train(&self) -> &[Item] {
        &self.train
    }
    fn test(&self) -> &[Item] {
        &self.test
    }
    fn minibatch_size(&self) -> usize {
        self.minibatch
    }
    fn rewards(&self, items: &[&Item], completions: &[String]) -> Result<Vec<Reward>> {
        check_lengths("arith", items.len(), completions.len())?;
        items
            .iter()
            .zip(completions)
            .map(|(item, c)| {
                let answer = parse_number(&item.answer).ok_or_else(|| Error::Task {
                    task: "arith".into(),
                    problem: format!("item answer `{}` is not a number", item.answer),
                })?;
                Ok(reward(c, answer))
            })
            .collect()
    }
}
