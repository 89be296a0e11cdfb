//! `evotune generate`: one prompt, or a JSONL file of prompts generated in one batch.

use std::io::Write;

use anyhow::{bail, Context};
use evotune::model::generate::{generate, GenerateOptions, Sampling};
use evotune::tokenizer::Prompt;

use crate::args::GenerateArgs;
use crate::cmd::with_threads;

#[derive(serde::Deserialize)]
struct PromptLine {
    prompt: String,
    #[serde(default)]
    system: Option<String>,
}

pub fn run(a: GenerateArgs) -> anyhow::Result<()> {
    let (mut model, weights, notes) = evotune::model::load_weights(&a.model, a.weights)
        .with_context(|| format!("loading model {} (--weights {})", a.model, a.weights.name()))?;
    model.chat.set_args(&crate::args::task_opts_table(&a.chat_template_args)?);
    for n in &notes {
        eprintln!("note: {n}");
    }
    if a.weights != evotune::model::WeightFormat::F32 {
        eprintln!("weights: {}", weights.summary());
    }
    let prompts: Vec<Prompt> = match (&a.prompt, &a.prompt_file) {
        (Some(p), _) => vec![to_prompt(p.clone(), a.system.clone(), a.raw)],
        (None, Some(file)) => {
            let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
            let mut out = Vec::new();
            for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
                let pl: PromptLine = serde_json::from_str(line)
                    .with_context(|| format!("{}:{}: not a {{\"prompt\": …}} line", file.display(), i + 1))?;
                out.push(to_prompt(pl.prompt, pl.system.or_else(|| a.system.clone()), a.raw));
            }
            out
        }
        (None, None) => bail!("give --prompt TEXT or --prompt-file F.jsonl"),
    };
    let ids: Vec<Vec<u32>> = prompts.iter().map(|p| model.encode_prompt(p, "")).collect::<Result<_, _>>()?;
    let sampling = if a.temperature > 0.0 {
        Sampling::Sample { temperature: a.temperature, top_p: a.top_p, seed: a.seed }
    } else {
        Sampling::Greedy
    };
    let opts = GenerateOptions {
        max_new_tokens: a.max_new_tokens,
        sampling,
        stop_tokens: model.tokenizer.stop_tokens.clone(),
    };
    let outputs = with_threads(a.threads, || generate(&model.llama, weights.weights(), &ids, &opts))??;
    let texts: Vec<String> = outputs.iter().map(|o| model.tokenizer.decode(o, true)).collect::<Result<_, _>>()?;
    if a.weights != evotune::model::WeightFormat::F32 {
        if let Some(b) = evotune::run::bench::peak_rss_bytes() {
            eprintln!("peak RSS {:.1} MB", b as f64 / 1e6);
        }
    }

    if a.prompt.is_some() {
        println!("{}", texts[0]);
        return Ok(());
    }
    let mut sink: Box<dyn Write> = match &a.out {
        Some(p) => Box::new(std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?),
        None => Box::new(std::io::stdout().lock()),
    };
    for (p, t) in prompts.iter().zip(&texts) {
        writeln!(sink, "{}", serde_json::json!({ "prompt": p.text(), "completion": t }))?;
    }
    Ok(())
}

fn to_prompt(text: String, system: Option<String>, raw: bool) -> Prompt {
    if raw {
        Prompt::Raw(text)
    } else {
        Prompt::Chat { system, user: text }
    }
}
