//! Multiple-choice prior tasks: `{"question": …, "choices": [..], "answer": index or letter}`.
//!
//! Two ways to score a suite:
//! - **log-likelihood** (cheap, sensitive): the question is the user turn of a chat prompt and
//!   each choice is scored as the assistant's reply, ℓⱼ = Σₜ log p(choice tokens | prompt) (sum over
//!   the choice's tokens, lm-eval's `acc`). Correct ⇔ argmaxⱼ ℓⱼ is the answer (ties go to the
//!   lower index). The sensitive signal is the **margin** ℓ_answer − maxⱼ≠answer ℓⱼ, averaged
//!   over items: it moves long before accuracy does.
//! - **generation**: the prompt lists lettered choices and asks for the letter; the reply is
//!   parsed like the reference ARC/MMLU scorers: the first "answer is (X)", else "answer is X",
//!   else the first standalone capital letter among the choices' letters; as a last resort, the
//!   one choice whose text appears in the reply.

use std::path::Path;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::tasks::countdown::check_lengths;
use crate::tasks::jsonl::{json_kind, numbered_lines, optional_string, parse_object, string_field};
use crate::tasks::{Item, Reward, Task};
use crate::tokenizer::Prompt;

const MAX_NEW_TOKENS: usize = 16;
const LETTERS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct McItem {
    pub question: String,
    pub choices: Vec<String>,
    /// Index of the right choice.
    pub answer: usize,
    /// Optional system prompt (None: the chat template's default).
    #[serde(default)]
    pub system: Option<String>,
}

impl McItem {
    /// The prompt of log-likelihood scoring: the bare question.
    pub fn loglik_prompt(&self) -> Prompt {
        Prompt::Chat { system: self.system.clone(), user: self.question.clone() }
    }

    /// The prompt of generation scoring: question, lettered choices, instruction.
    pub fn generation_prompt(&self) -> Prompt {
        let mut user = format!("{}\n", self.question);
        for (i, c) in self.choices.iter().enumerate() {
            user.push_str(&format!("\n{}. {}", LETTERS[i] as char, c));
        }
        let letters: Vec<String> = (0..self.choices.len()).map(|i| (LETTERS[i] as char).to_string()).collect();
        user.push_str(&format!("\n\nAnswer with only the letter of the correct choice ({}).", letters.join(", ")));
        Prompt::Chat { system: self.system.clone(), user }
    }
}

/// Parses a suite; `path` is only used in error messages.
pub fn parse_items(path: &Path, text: &str) -> Result<Vec<McItem>> {
    let mut items = Vec::new();
    for (line, l) in numbered_lines(text) {
        let obj = parse_object(path, line, l)?;
        let bad = |field: &'static str, problem: String| Error::BadTaskLine { path: path.into(), line, field, problem };
        let question = string_field(path, line, &obj, "question", false)?;
        let choices: Vec<String> = match obj.get("choices") {
            Some(Value::Array(a)) => a
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::String(s) if !s.trim().is_empty() => Ok(s.clone()),
                    Value::Number(n) => Ok(n.to_string()),
                    other => Err(bad(
                        "choices",
                        format!("choice {i} should be a non-empty string, found {}", json_kind(other)),
                    )),
                })
                .collect::<Result<_>>()?,
            Some(other) => {
                return Err(bad("choices", format!("expected an array of strings, found {}", json_kind(other))))
            }
            None => return Err(bad("choices", "is missing".into())),
        };
        if choices.len() < 2 || choices.len() > LETTERS.len() {
            return Err(bad("choices", format!("needs 2 to 26 choices, found {}", choices.len())));
        }
        let answer = match obj.get("answer") {
            Some(Value::Number(n)) => match n.as_u64() {
                Some(i) if (i as usize) < choices.len() => i as usize,
                _ => return Err(bad("answer", format!("index {n} is not in 0..{}", choices.len()))),
            },
            Some(Value::String(s)) => {
                let t = s.trim();
                match t.as_bytes() {
                    [c] if c.is_ascii_uppercase() && ((c - b'A') as usize) < choices.len() => (c - b'A') as usize,
                    _ => {
                        return Err(bad(
                            "answer",
                            format!("`{t}` is not a letter A–{}", LETTERS[choices.len() - 1] as char),
                        ))
                    }
                }
            }
            Some(other) => {
                return Err(bad("answer", format!("expected an index or a letter, found {}", json_kind(other))))
            }
            None => return Err(bad("answer", "is missing".into())),
        };
        let system = optional_string(path, line, &obj, "system")?;
        items.push(McItem { question, choices, answer, system });
    }
    if items.is_empty() {
        return Err(Error::BadTaskLine { path: path.into(), line: 0, field: "(file)", problem: "has no items".into() });
    }
    Ok(items)
}

/// Summary of log-likelihood scoring.
#[derive(Clone, Debug, PartialEq)]
pub struct LoglikStats {
    pub accuracy: f64,
    /// Mean over items of ℓ_answer − maxⱼ≠answer ℓⱼ (nats).
    pub mean_margin: f64,
    /// Mean over items of ℓ_answer (nats).
    pub mean_answer_logprob: f64,
}

/// Accuracy and margins from per-choice log-likelihoods `lls[item][choice]`.
pub fn loglik_stats(items: &[McItem], lls: &[Vec<f64>]) -> LoglikStats {
    let n = items.len().max(1) as f64;
    let (mut correct, mut margin, mut answer_lp) = (0usize, 0.0f64, 0.0f64);
    for (item, ll) in items.iter().zip(lls) {
        let best = ll.iter().enumerate().fold(0, |b, (j, &v)| if v > ll[b] { j } else { b });
        if best == item.answer {
            correct += 1;
        }
        let other =
            ll.iter().enumerate().filter(|&(j, _)| j != item.answer).map(|(_, &v)| v).fold(f64::NEG_INFINITY, f64::max);
        margin += ll[item.answer] - other;
        answer_lp += ll[item.answer];
    }
    LoglikStats { accuracy: correct as f64 / n, mean_margin: margin / n, mean_answer_logprob: answer_lp / n }
}

/// True when byte `i` of `s` starts a standalone token of length `len` (no letter or digit on
/// either side).
fn standalone(s: &[u8], i: usize, len: usize) -> bool {
    (i == 0 || !s[i - 1].is_ascii_alphanumeric()) && (i + len >= s.len() || !s[i + len].is_ascii_alphanumeric())
}

/// The choice index a generated reply names, if any (see the module doc for the cascade).
pub fn parse_choice(reply: &str, choices: &[String]) -> Option<usize> {
    let n = choices.len();
    let valid = |c: u8| c.is_ascii_uppercase() && ((c - b'A') as usize) < n;
    let upper = reply.to_ascii_uppercase();
    let u = upper.as_bytes();
    let key = "ANSWER IS ";
    let mut from = 0;
    let mut plain: Option<usize> = None;
    while let Some(k) = upper[from..].find(key) {
        let at = from + k + key.len();
        if at + 2 < u.len() && u[at] == b'(' && valid(u[at + 1]) && u[at + 2] == b')' {
            return Some((u[at + 1] - b'A') as usize);
        }
        if plain.is_none() && at < u.len() && valid(u[at]) && standalone(u, at, 1) {
            plain = Some((u[at] - b'A') as usize);
        }
        from = at;
    }
    if plain.is_some() {
        return plain;
    }
    let r = reply.as_bytes();
    if let Some(i) = (0..r.len()).find(|&i| valid(r[i]) && standalone(r, i, 1)) {
        return Some((r[i] - b'A') as usize);
    }
    let lower = reply.to_lowercase();
    let hits: Vec<usize> = choices
        .iter()
        .enumerate()
        .filter(|(_, c)| {
            let c = c.trim().to_lowercase();
            !c.is_empty() && lower.match_indices(&c).any(|(i, _)| standalone(lower.as_bytes(), i, c.len()))
        })
        .map(|(j, _)| j)
        .collect();
    (hits.len() == 1).then(|| hits[0])
}

/// A multiple-choice suite scored by generation, as a [`Task`] (all items are test items). Each
/// item's `answer` is the JSON of its [`McItem`].
pub struct McGenerationTask {
    name: String,
    test: Vec<Item>,
}

impl McGenerationTask {
    pub fn new(name: &str, items: &[McItem]) -> McGenerationTask {
        let test = items
            .iter()
            .map(|it| Item {
                prompt: it.generation_prompt(),
                answer: serde_json::to_string(it).expect("McItem serialises"),
            })
            .collect();
        McGenerationTask { name: name.to_string(), test }
    }
}

impl Task for McGenerationTask {
    fn name(&self) -> &str {
        &self.name
    }
    fn max_new_tokens(&self) -> usize {
        MAX_NEW_TOKENS
    }
    fn train(&self) -> &[Item] {
        &[]
    }
    fn test(&self) -> &[Item] {
        &self.test
    }
    fn rewards(&self, items: &[&Item], completions: &[String]) -> Result<Vec<Reward>> {
        check_lengths(&self.name, items.len(), completions.len())?;
        items
            .iter()
            .zip(completions)
            .map(|(item, c)| {
                let mc: McItem = serde_json::from_str(&item.answer).map_err(|e| Error::Task {
                    task: self.name.clone(),
                    problem: format!("item answer is not a multiple-choice item: {e}"),
                })?;
                let right = parse_choice(c, &mc.choices) == Some(mc.answer);
                Ok(Reward { value: if right { 1.0 } else { 0.0 }, correct: right })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ch(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_letters_like_the_reference() {
        let c = ch(&["Paris", "Rome", "Berlin", "Madrid"]);
        assert_eq!(parse_choice("The answer is (C).", &c), Some(2));
        assert_eq!(parse_choice("I think the answer is B because", &c), Some(1));
        assert_eq!(parse_choice("D", &c), Some(3));
        assert_eq!(parse_choice("It is Rome.", &c), Some(1));
        assert_eq!(parse_choice("Paris or Rome", &c), None);
        assert_eq!(parse_choice("E", &c), None);
    }

    #[test]
    fn margin_and_accuracy() {
        let items = vec![
            McItem { question: "q".into(), choices: ch(&["a", "b"]), answer: 0, system: None },
            McItem { question: "q".into(), choices: ch(&["a", "b", "c"]), answer: 2, system: None },
        ];
        let s = loglik_stats(&items, &[vec![-1.0, -3.0], vec![-1.0, -2.0, -1.5]]);
        assert_eq!(s.accuracy, 0.5);
        assert!((s.mean_margin - (2.0 + -0.5) / 2.0).abs() < 1e-12);
        assert!((s.mean_answer_logprob - (-1.25)).abs() < 1e-12);
    }
}
