//! Conciseness, the toy task of Qiu et al. (paper 2): reward short answers of the target's length.
//!
//! The reference rewards −|len(completion) − len(target)| in characters. Here the difference is
//! normalised by the target's length so that rewards of different items are comparable:
//!
//!   reward = −|len(c) − len(t)| / max(len(t), 1),   len in Unicode scalar values, c trimmed.
//!
//! So an exact-length answer scores 0 and one twice as long as the target scores −1. ES z-scores the
//! rewards, so the scale does not change training; it only makes logged values readable. Correct ⇔
//! the trimmed completion equals the target, ignoring case and a trailing full stop.
//!
//! Training prompts are the reference's two; the test prompts are eight more of the same kind
//! written for this project.

use crate::error::Result;
use crate::tasks::countdown::check_lengths;
use crate::tasks::{Item, Reward, Task, TaskOptions};
use crate::tokenizer::Prompt;

const MAX_NEW_TOKENS: usize = 100;

const TRAIN: &[(&str, &str)] =
    &[("Solve: 3 + 5 =", "8"), ("If all birds can fly and penguins are birds, can penguins fly?", "No")];

const TEST: &[(&str, &str)] = &[
    ("Solve: 6 + 7 =", "13"),
    ("Solve: 9 - 4 =", "5"),
    ("Is ice colder than steam?", "Yes"),
    ("If every cat has a tail and Tom is a cat, does Tom have a tail?", "Yes"),
    ("What color is fresh snow?", "White"),
    ("How many legs does a spider have?", "8"),
    ("Is the sun a star?", "Yes"),
    ("If no fish can walk and a trout is a fish, can a trout walk?", "No"),
];

pub fn reward(completion: &str, target: &str) -> Reward {
    let c = completion.trim();
    let len_c = c.chars().count() as f64;
    let len_t = target.chars().count() as f64;
    let value = -(len_c - len_t).abs() / len_t.max(1.0);
    let norm = |s: &str| s.trim_end_matches('.').to_lowercase();
    Reward { value: value as f32, correct: norm(c) == norm(target) }
}

pub struct Conciseness {
    train: Vec<Item>,
    test: Vec<Item>,
    max_new_tokens: usize,
    minibatch: usize,
}

impl Conciseness {
    pub fn new(opts: &TaskOptions) -> Conciseness {
        let items = |pairs: &[(&str, &str)]| -> Vec<Item> {
            pairs
                .iter()
                .map(|(q, a)| Item {
                    prompt: Prompt::Chat { system: None, user: q.to_string() },
                    answer: a.to_string(),
                })
                .collect()
        };
        Conciseness {
            train: items(TRAIN),
            test: items(TEST),
            max_new_tokens: opts.max_new_tokens_or(MAX_NEW_TOKENS),
            minibatch: opts.minibatch,
        }
    }
}

impl Task for Conciseness {
    fn name(&self) -> &str {
        "conciseness"
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
        check_lengths("conciseness", items.len(), completions.len())?;
        Ok(items.iter().zip(completions).map(|(item, c)| reward(c, &item.answer)).collect())
    }
}
