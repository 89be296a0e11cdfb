//! How a generation task with free-form reference answers (a JSONL file) scores a completion.
//!
//! | kind | answer part (0 or 1) | format part | value |
//! |---|---|---|---|
//! | `exact` | trimmed completion = trimmed answer | — | answer |
//! | `contains` | completion contains the answer, ignoring case | — | answer |
//! | `regex` | the pattern matches anywhere in the completion | — | answer |
//! | `numeric` | last number in the completion within `tolerance` of the answer | completion is one bare number | 0.1·format + answer |
//! | `hash` | GSM8K rule below | last line is exactly `#### n` | 0.1·format + answer |
//! | `command` | — (the program's number) | — | program output |
//!
//! `hash` follows the reference GSM8K scorer: search the text after the last `</think>` (whole
//! text if none), at most its last 4,096 characters; take the first number after the last `####`,
//! else inside the last `\boxed{…}`, else inside the last `<answer>…</answer>`, else the first
//! number of the region; right when within `tolerance` of the answer.
//!
//! Correct ⇔ the answer part is 1; for `command`, ⇔ the program's reward is > 0.

use crate::error::{Error, Result};
use crate::tasks::command::{CommandRecord, CommandReward};
use crate::tasks::numbers::{find_numbers, first_number, is_bare_number, last_number, parse_number};
use crate::tasks::{Item, Reward, TaskOptions};

#[derive(Clone, Debug)]
pub enum RewardKind {
    Exact,
    Contains,
    /// `pattern` with `{answer}` replaced by the escaped answer; empty: the answer is the pattern.
    Regex {
        pattern: String,
    },
    Numeric {
        tolerance: f64,
    },
    Hash {
        tolerance: f64,
    },
    Command(CommandReward),
}

impl RewardKind {
    pub fn from_options(opts: &TaskOptions) -> Result<RewardKind> {
        let tolerance = opts.tolerance;
        if !(tolerance.is_finite() && tolerance >= 0.0) {
            return Err(Error::Task {
                task: "reward".into(),
                problem: format!("`tolerance` must be ≥ 0, got {tolerance}"),
            });
        }
        Ok(match opts.reward.as_str() {
            "exact" => RewardKind::Exact,
            "contains" => RewardKind::Contains,
            "regex" => RewardKind::Regex { pattern: opts.pattern.clone() },
            "numeric" => RewardKind::Numeric { tolerance },
            "hash" => RewardKind::Hash { tolerance },
            "command" => RewardKind::Command(CommandReward::new(&opts.command, opts.command_timeout_s)?),
            other => {
                return Err(Error::Task {
                    task: "reward".into(),
                    problem: format!("unknown reward kind `{other}` (exact, numeric, regex, contains, hash, command)"),
                })
            }
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            RewardKind::Exact => "exact",
            RewardKind::Contains => "contains",
            RewardKind::Regex { .. } => "regex",
            RewardKind::Numeric { .. } => "numeric",
            RewardKind::Hash { .. } => "hash",
            RewardKind::Command(_) => "command",
        }
    }

    /// Scores `completions[i]` against `items[i]`.
    pub fn score(&self, task: &str, items: &[&Item], completions: &[String]) -> Result<Vec<Reward>> {
        crate::tasks::countdown::check_lengths(task, items.len(), completions.len())?;
        if let RewardKind::Command(cmd) = self {
            let records: Vec<CommandRecord<'_>> = items
                .iter()
                .zip(completions)
                .map(|(item, c)| CommandRecord { prompt: item.prompt.text(), completion: c, answer: &item.answer })
                .collect();
            let values = cmd.run(&records)?;
            return Ok(values.into_iter().map(|v| Reward { value: v, correct: v > 0.0 }).collect());
        }
        items.iter().zip(completions).map(|(item, c)| self.score_one(task, &item.answer, c)).collect()
    }

    fn score_one(&self, task: &str, answer: &str, completion: &str) -> Result<Reward> {
        let number = |answer: &str| {
            parse_number(answer).ok_or_else(|| Error::Task {
                task: task.into(),
                problem: format!("reward `{}` needs a numeric answer, found `{answer}`", self.name()),
            })
        };
        let plain = |right: bool| Reward { value: if right { 1.0 } else { 0.0 }, correct: right };
        let formatted = |format: bool, right: bool| Reward {
            value: 0.1 * if format { 1.0 } else { 0.0 } + if right { 1.0 } else { 0.0 },
            correct: right,
        };
        Ok(match self {
            RewardKind::Exact => plain(completion.trim() == answer.trim()),
            RewardKind::Contains => plain(completion.to_lowercase().contains(&answer.trim().to_lowercase())),
            RewardKind::Regex { pattern } => {
                let pat = if pattern.is_empty() {
                    answer.to_string()
                } else {
                    pattern.replace("{answer}", &regex::escape(answer))
                };
                let re = regex::Regex::new(&pat)
                    .map_err(|e| Error::Task { task: task.into(), problem: format!("regex `{pat}`: {e}") })?;
                plain(re.is_match(completion))
            }
            RewardKind::Numeric { tolerance } => {
                let a = number(answer)?;
                let right = last_number(completion).is_some_and(|x| (x - a).abs() <= *tolerance);
                formatted(is_bare_number(completion), right)
            }
            RewardKind::Hash { tolerance } => {
                let a = number(answer)?;
                let right = hash_answer(completion).is_some_and(|x| (x - a).abs() <= *tolerance);
                formatted(hash_format(completion), right)
            }
            RewardKind::Command(_) => unreachable!("handled in score"),
        })
    }
}

/// The number a GSM8K-style answer gives (see the module doc for the cascade).
pub fn hash_answer(text: &str) -> Option<f64> {
    let region = match text.rfind("</think>") {
        Some(i) => &text[i + "</think>".len()..],
        None => text,
    };
    let start = region.char_indices().rev().nth(4095).map(|(i, _)| i).unwrap_or(0);
    let region = &region[start..];
    if let Some(i) = region.rfind("####") {
        return first_number(&region[i + 4..]);
    }
    if let Some(i) = region.rfind("\\boxed{") {
        let inner = &region[i + "\\boxed{".len()..];
        let mut depth = 1usize;
        let end = inner
            .char_indices()
            .find(|&(_, c)| {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    _ => {}
                }
                depth == 0
            })
            .map(|(j, _)| j)
            .unwrap_or(inner.len());
        return first_number(&inner[..end]);
    }
    if let Some(i) = region.rfind("<answer>") {
        let inner = &region[i + "<answer>".len()..];
        if let Some(j) = inner.find("</answer>") {
            return first_number(&inner[..j]);
        }
    }
    first_number(region)
}

/// True when the last non-empty line is exactly `#### <number>`.
pub fn hash_format(text: &str) -> bool {
    let Some(line) = text.lines().map(str::trim).rfind(|l| !l.is_empty()) else { return false };
    let Some(rest) = line.strip_prefix("####") else { return false };
    let rest = rest.trim();
    let found = find_numbers(rest);
    found.len() == 1 && found[0].start == 0 && found[0].end == rest.len()
}
