//! Generation tasks from a JSONL file: one `{"prompt": …, "answer": …, "system": …?}` per line.
//!
//! `answer` may be a string or a number; `system` is optional (absent: the chat template's own
//! default). Blank lines are skipped and other fields are ignored. The split into train and test is
//! by seeded hash ([`crate::tasks::split`]); the reward is a [`RewardKind`].

use std::path::Path;

use serde_json::Value;

use crate::error::{Error, IoResultExt, Result};
use crate::tasks::reward_kind::RewardKind;
use crate::tasks::split::split_items;
use crate::tasks::{Item, Reward, Task, TaskOptions};
use crate::tokenizer::Prompt;

const MAX_NEW_TOKENS: usize = 64;

/// The JSON object on line `line` (1-based) of `path`, or a `BadTaskLine`.
pub(crate) fn parse_object(path: &Path, line: usize, text: &str) -> Result<serde_json::Map<String, Value>> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(Error::BadTaskLine {
            path: path.into(),
            line,
            field: "(line)",
            problem: format!("expected a JSON object, found {}", json_kind(&other)),
        }),
        Err(e) => {
            Err(Error::BadTaskLine { path: path.into(), line, field: "(line)", problem: format!("invalid JSON: {e}") })
        }
    }
}

pub(crate) fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A required string field (numbers are accepted and written as text when `numbers_ok`).
pub(crate) fn string_field(
    path: &Path,
    line: usize,
    obj: &serde_json::Map<String, Value>,
    field: &'static str,
    numbers_ok: bool,
) -> Result<String> {
    match obj.get(field) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
        Some(Value::String(_)) => {
            Err(Error::BadTaskLine { path: path.into(), line, field, problem: "is empty".into() })
        }
        Some(Value::Number(n)) if numbers_ok => Ok(n.to_string()),
        Some(other) => Err(Error::BadTaskLine {
            path: path.into(),
            line,
            field,
            problem: format!(
                "expected a string{}, found {}",
                if numbers_ok { " or a number" } else { "" },
                json_kind(other)
            ),
        }),
        None => Err(Error::BadTaskLine { path: path.into(), line, field, problem: "is missing".into() }),
    }
}

/// An optional string field.
pub(crate) fn optional_string(
    path: &Path,
    line: usize,
    obj: &serde_json::Map<String, Value>,
    field: &'static str,
) -> Result<Option<String>> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(Error::BadTaskLine {
            path: path.into(),
            line,
            field,
            problem: format!("expected a string, found {}", json_kind(other)),
        }),
    }
}

/// Non-blank lines of `text` with their 1-based line numbers.
pub(crate) fn numbered_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())).filter(|(_, l)| !l.is_empty())
}

/// Parses generation items; `path` is only used in error messages.
pub fn parse_items(path: &Path, text: &str) -> Result<Vec<Item>> {
    let mut items = Vec::new();
    for (line, l) in numbered_lines(text) {
        let obj = parse_object(path, line, l)?;
        let user = string_field(path, line, &obj, "prompt", false)?;
        let answer = string_field(path, line, &obj, "answer", true)?;
        let system = optional_string(path, line, &obj, "system")?;
        items.push(Item { prompt: Prompt::Chat { system, user }, answer });
    }
    if items.is_empty() {
        return Err(Error::BadTaskLine { path: path.into(), line: 0, field: "(file)", problem: "has no items".into() });
    }
    Ok(items)
}

/// Reads a file as text, naming the path on failure.
pub(crate) fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_path(path)
}

pub struct JsonlTask {
    name: String,
    train: Vec<Item>,
    test: Vec<Item>,
    kind: RewardKind,
    max_new_tokens: usize,
    minibatch: usize,
}

impl JsonlTask {
    /// A task from JSONL `text` (read from `path`, or a built-in suite named by `path`).
    pub fn from_text(name: &str, path: &Path, text: &str, opts: &TaskOptions) -> Result<JsonlTask> {
        if !(0.0..1.0).contains(&opts.test_fraction) {
            return Err(Error::Task {
                task: name.into(),
                problem: format!("`test_fraction` must be in [0, 1), got {}", opts.test_fraction),
            });
        }
        let items = parse_items(path, text)?;
        let (train, test) = split_items(items, opts.seed, opts.test_fraction, opts.train_size, opts.test_size);
        Ok(JsonlTask {
            name: name.to_string(),
            train,
            test,
            kind: RewardKind::from_options(opts)?,
            max_new_tokens: opts.max_new_tokens_or(MAX_NEW_TOKENS),
            minibatch: opts.minibatch,
        })
    }

    pub fn from_file(path: &Path, opts: &TaskOptions) -> Result<JsonlTask> {
        let text = read_text(path)?;
        let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "jsonl".into());
        JsonlTask::from_text(&name, path, &text, opts)
    }

    /// Every item on the test side (prior tasks evaluate the whole file: `test_fraction` ignored).
    pub fn all_as_test(name: &str, path: &Path, text: &str, opts: &TaskOptions) -> Result<JsonlTask> {
        let mut test = parse_items(path, text)?;
        if opts.test_size > 0 {
            test.truncate(opts.test_size);
        }
        Ok(JsonlTask {
            name: name.to_string(),
            train: Vec::new(),
            test,
            kind: RewardKind::from_options(opts)?,
            max_new_tokens: opts.max_new_tokens_or(MAX_NEW_TOKENS),
            minibatch: 0,
        })
    }

    pub fn reward_kind(&self) -> &RewardKind {
        &self.kind
    }
}

impl Task for JsonlTask {
    fn name(&self) -> &str {
        &self.name
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
        self.kind.score(&self.name, items, completions)
    }
}
