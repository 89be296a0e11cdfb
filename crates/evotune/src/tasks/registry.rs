//! Building tasks from what the user names.
//!
//! Target (`target_task`): `countdown`, `arith`, `conciseness`, `random` (rewards without the
//! model), or a path to a JSONL file of
//! `{"prompt", "answer", "system"?}` lines scored by `opts.reward`.
//!
//! Prior (`prior_task`), optionally suffixed with `:loglik` or `:gen`:
//! - a built-in multiple-choice suite (`capitals`, `opposites`, `plurals`, `science`):
//!   log-likelihood scoring by default, `:gen` for generation;
//! - `arith`, `countdown`, `conciseness`: their test split, scored by generation;
//! - `kl` (the built-in probe prompts) or `kl:SPEC` (the questions/prompts of a suite or file);
//! - a JSONL path: multiple choice when its first line has `choices`, else a generation task
//!   (every line evaluated, scored by `opts.reward`).

use std::path::Path;

use crate::error::{Error, Result};
use crate::model::Model;
use crate::model::Weights;
use crate::tasks::arith::Arith;
use crate::tasks::conciseness::Conciseness;
use crate::tasks::countdown::Countdown;
use crate::tasks::jsonl::{self, numbered_lines, parse_object, string_field, JsonlTask};
use crate::tasks::kl_probe::KlProbe;
use crate::tasks::multiple_choice::{self, McGenerationTask, McItem};
use crate::tasks::random::RandomReward;
use crate::tasks::suites::{self, SuiteKind};
use crate::tasks::{Task, TaskOptions};
use crate::tokenizer::Prompt;

const TARGETS: &str = "countdown, arith, conciseness, random";

/// The target task named by `spec`: a built-in name or a JSONL path.
pub fn target_task(spec: &str, opts: &TaskOptions) -> Result<Box<dyn Task>> {
    Ok(match spec {
        "countdown" => Box::new(Countdown::new(opts)),
        "arith" => Box::new(Arith::new(opts)?),
        "conciseness" => Box::new(Conciseness::new(opts)),
        "random" => Box::new(RandomReward::new(opts)),
        path if Path::new(path).is_file() => Box::new(JsonlTask::from_file(Path::new(path), opts)?),
        other => {
            return Err(Error::Task {
                task: other.into(),
                problem: format!("not a built-in target ({TARGETS}) and not a readable file"),
            })
        }
    })
}

/// A prior task: only evaluated, never trained on.
pub enum PriorTask {
    /// Multiple choice scored by the log-likelihood of each choice.
    MultipleChoice { name: String, items: Vec<McItem> },
    /// Scored by generating and rewarding replies (multiple choice by letter, or a generation task).
    Generation(Box<dyn Task>),
    /// KL(base‖current) on base-sampled continuations; needs [`PriorTask::prepare`].
    Kl(KlProbe),
}

impl PriorTask {
    pub fn name(&self) -> &str {
        match self {
            PriorTask::MultipleChoice { name, .. } => name,
            PriorTask::Generation(task) => task.name(),
            PriorTask::Kl(probe) => probe.name(),
        }
    }

    /// Keeps only the first `limit` items of a multiple-choice suite (0 = all): a cheaper, noisier
    /// evaluation. Other kinds are unchanged.
    pub fn limit(&mut self, limit: usize) {
        if let PriorTask::MultipleChoice { items, .. } = self {
            if limit > 0 {
                items.truncate(limit);
            }
        }
    }

    /// Prepares what needs the base model: the KL probe's continuations and base distributions,
    /// computed on `theta0`. A no-op for other kinds. Call once, with θ0, before evaluating.
    pub fn prepare(&mut self, model: &Model, theta0: &dyn Weights) -> Result<()> {
        match self {
            PriorTask::Kl(probe) if !probe.is_prepared() => probe.prepare(model, theta0),
            _ => Ok(()),
        }
    }
}

/// What `evotune eval --task SPEC` scores: a built-in target task's test split, or a prior task.
pub enum EvalTask {
    Target(Box<dyn Task>),
    Prior(PriorTask),
}

/// The task `spec` names for evaluation: a built-in target ([`crate::tasks::is_target_task`]) or
/// anything [`prior_task`] reads, limited to its first `limit` multiple-choice items (0 = all).
pub fn eval_task(spec: &str, opts: &TaskOptions, limit: usize) -> Result<EvalTask> {
    if crate::tasks::is_target_task(spec) {
        return Ok(EvalTask::Target(target_task(spec, opts)?));
    }
    let mut prior = prior_task(spec, opts)?;
    prior.limit(limit);
    Ok(EvalTask::Prior(prior))
}

/// Whether a JSONL text holds multiple-choice lines (its first line has `choices`).
fn looks_multiple_choice(path: &Path, text: &str) -> Result<bool> {
    match numbered_lines(text).next() {
        Some((line, l)) => Ok(parse_object(path, line, l)?.contains_key("choices")),
        None => Err(Error::BadTaskLine { path: path.into(), line: 0, field: "(file)", problem: "has no items".into() }),
    }
}

/// The prior task named by `spec` (see the module doc).
pub fn prior_task(spec: &str, opts: &TaskOptions) -> Result<PriorTask> {
    if spec == "kl" || spec.starts_with("kl:") {
        let source = spec.strip_prefix("kl:").unwrap_or("kl_prompts");
        let mut prompts = probe_prompts(source)?;
        if opts.kl_prompts > 0 {
            prompts.truncate(opts.kl_prompts);
        }
        let name = if source == "kl_prompts" { "kl".to_string() } else { format!("kl:{source}") };
        return Ok(PriorTask::Kl(KlProbe::new(&name, prompts, opts.kl_tokens, opts.kl_sample, opts.seed)?));
    }
    let (base, mode) = match spec.rsplit_once(':') {
        Some((b, m @ ("gen" | "loglik"))) => (b, Some(m)),
        _ => (spec, None),
    };
    let bad_mode =
        |m: &str| Error::Task { task: spec.into(), problem: format!("`:{m}` applies only to multiple-choice suites") };
    if matches!(base, "countdown" | "arith" | "conciseness") {
        if let Some(m) = mode {
            return Err(bad_mode(m));
        }
        return Ok(PriorTask::Generation(target_task(base, opts)?));
    }
    // Multiple-choice sets are evaluated whole: log-likelihood scoring is one batched forward.
    let mc = |name: &str, items: Vec<McItem>| -> PriorTask {
        match mode {
            Some("gen") => PriorTask::Generation(Box::new(McGenerationTask::new(&format!("{name}:gen"), &items))),
            _ => PriorTask::MultipleChoice { name: name.to_string(), items },
        }
    };
    if let Some(suite) = suites::find(base) {
        return match suite.kind {
            SuiteKind::MultipleChoice => {
                let path = Path::new(suite.name);
                Ok(mc(suite.name, multiple_choice::parse_items(path, suite.text)?))
            }
            SuiteKind::Prompts => Err(Error::Task {
                task: spec.into(),
                problem: format!("`{base}` holds probe prompts; use it as `kl:{base}`"),
            }),
        };
    }
    let path = Path::new(base);
    if !path.is_file() {
        return Err(Error::Task {
            task: spec.into(),
            problem: format!(
                "not a built-in prior ({}, countdown, arith, conciseness, kl) and not a readable file",
                suites::multiple_choice_names().join(", ")
            ),
        });
    }
    let text = jsonl::read_text(path)?;
    let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| base.to_string());
    if looks_multiple_choice(path, &text)? {
        Ok(mc(&name, multiple_choice::parse_items(path, &text)?))
    } else {
        if let Some(m) = mode {
            return Err(bad_mode(m));
        }
        Ok(PriorTask::Generation(Box::new(JsonlTask::all_as_test(&name, path, &text, opts)?)))
    }
}

/// Prompts for a KL probe: a built-in suite (probe prompts or the questions of a multiple-choice
/// suite) or a JSONL file (its `prompt` or `question` fields).
pub fn probe_prompts(source: &str) -> Result<Vec<Prompt>> {
    let (path, text): (&Path, String) = match suites::find(source) {
        Some(s) => (Path::new(s.name), s.text.to_string()),
        None if Path::new(source).is_file() => (Path::new(source), jsonl::read_text(Path::new(source))?),
        None => {
            return Err(Error::Task {
                task: format!("kl:{source}"),
                problem: "not a built-in suite and not a readable file".into(),
            })
        }
    };
    let mut prompts = Vec::new();
    for (line, l) in numbered_lines(&text) {
        let obj = parse_object(path, line, l)?;
        let field = if obj.contains_key("question") { "question" } else { "prompt" };
        let user = string_field(path, line, &obj, field, false)?;
        let system = jsonl::optional_string(path, line, &obj, "system")?;
        prompts.push(Prompt::Chat { system, user });
    }
    Ok(prompts)
}
