//! Command-line flags (clap). Validation only; `cmd/*` turns them into real work.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use evotune::es::{AwdKind, NoiseMode, NonFinitePolicy, PerturbationKind, Shaping};
use evotune::model::gguf_write::ExportType;
use evotune::model::WeightFormat;
use evotune::run::{Method, PartialConfig};

#[derive(Parser, Debug)]
#[command(name = "evotune", version, about = "Fine-tune LLMs with Evolution Strategies, and keep what they knew")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
#[allow(clippy::large_enum_variant)] // parsed once per process
pub enum Command {
    /// Fetch the default model (SmolLM2-135M-Instruct Q4_1) into the cache and print its path.
    FetchModel,
    /// Generate a completion (or one per line of a JSONL prompt file).
    Generate(GenerateArgs),
    /// Fine-tune a model with ES (or resume a run with --resume RUN).
    Train(TrainArgs),
    /// Evaluate a model on a task (target test split or prior suite) and print the accuracy.
    Eval(EvalArgs),
    /// Rebuild θ_K of a run from its trajectory and write it as safetensors.
    Replay(ReplayArgs),
    /// Export a run's weights (at the end or at iteration K) as safetensors or GGUF.
    Export(ExportArgs),
    /// Which parameter groups carry a run's forgetting and its gain: revert each to θ0, evaluate.
    Attribute(AttributeArgs),
    /// Plot one or more runs (PNG) and write a Markdown summary table.
    Report(ReportArgs),
    /// Benchmarks that print figures.
    Bench(BenchArgs),
    /// The newcomer's tour: fetch the default model, train on `arith` with and without AWD, report.
    Demo(DemoArgs),
}

#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// GGUF path, HF model directory, or `smollm2-135m`.
    #[arg(long, default_value = "smollm2-135m")]
    pub model: String,
    /// A variable for the model's chat template, KEY=VALUE (repeatable), e.g.
    /// `--chat-template-arg enable_thinking=true` for Qwen3 (whose thinking is off by default).
    #[arg(long = "chat-template-arg", value_name = "KEY=VALUE")]
    pub chat_template_args: Vec<String>,
    /// The user message (rendered with the model's chat template unless --raw).
    #[arg(long, required_unless_present = "prompt_file")]
    pub prompt: Option<String>,
    /// JSONL file with one {"prompt": …, "system"?: …} per line; all are generated in one batch.
    #[arg(long, conflicts_with = "prompt")]
    pub prompt_file: Option<PathBuf>,
    /// Write JSONL results here instead of stdout (with --prompt-file).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// System message (default: the template's own).
    #[arg(long)]
    pub system: Option<String>,
    /// Use the prompt as raw text, without the chat template.
    #[arg(long)]
    pub raw: bool,
    #[arg(long, default_value_t = 128)]
    pub max_new_tokens: usize,
    /// 0 = greedy.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Weights of the forward: `f32` (dequantized), `quantized` (the GGUF's own Q8_0/Q4_0/Q4_1
    /// blocks, K-quants as Q8_0; integer kernels) or `q8_0` (every matrix quantized to Q8_0 at load).
    #[arg(long, default_value = "f32")]
    pub weights: WeightFormat,
}

#[derive(Args, Debug, Default)]
pub struct TrainArgs {
    /// TOML file with any of the settings below (flags win).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Continue the run in this directory (kill -9 safe; same trajectory as an uninterrupted run).
    #[arg(long, value_name = "RUN")]
    pub resume: Option<PathBuf>,
    /// No progress bar: one line per evaluation (for logs).
    #[arg(long)]
    pub quiet: bool,
    /// Start from a named set of settings (under the config file and the flags): `paper` is the
    /// papers' N = 30, σ = 1e-3, α = 5e-4 with every training prompt in every iteration.
    #[arg(long, value_enum)]
    pub preset: Option<Preset>,
    #[command(flatten)]
    pub settings: SettingArgs,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preset {
    Paper,
}

/// Every run setting as a flag; each one is also a TOML key (`--awd-lambda` ↔ `awd_lambda`).
#[derive(Args, Debug, Default, Clone)]
pub struct SettingArgs {
    #[arg(long)]
    pub model: Option<String>,
    /// Built-in target task (arith, countdown, conciseness) or a JSONL task file.
    #[arg(long)]
    pub task: Option<String>,
    /// Prior task to track (repeatable): built-in suite, JSONL file, or `kl`.
    #[arg(long = "prior")]
    pub priors: Vec<String>,
    #[arg(long)]
    pub population: Option<usize>,
    #[arg(long)]
    pub sigma: Option<f32>,
    #[arg(long)]
    pub alpha: Option<f32>,
    #[arg(long)]
    pub iterations: Option<u64>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// `iid`, or `shared-shape` (the reference code's noise: equal-shaped tensors share ε).
    #[arg(long)]
    pub noise: Option<NoiseMode>,
    #[arg(long)]
    pub mirrored: bool,
    /// `zscore` or `centred-rank`.
    #[arg(long)]
    pub shaping: Option<Shaping>,
    /// Anchored weight decay toward θ0: `none`, `l2` or `l1`.
    #[arg(long)]
    pub awd: Option<AwdKind>,
    #[arg(long)]
    pub awd_lambda: Option<f32>,
    /// Hold the drift at a bound, setting AWD's λ online: `kl=B` (mean per-token KL on the KL
    /// probe; needs `--prior kl`) or `norm=B` (‖θ−θ0‖₂). AWD is l2 unless `--awd l1`.
    #[arg(long)]
    pub drift_budget: Option<evotune::es::DriftBudget>,
    /// What a NaN/inf reward does: `error` or `worst`.
    #[arg(long)]
    pub nonfinite_reward: Option<NonFinitePolicy>,
    /// `full` (noise on every weight) or `lowrank` (σ/√r·A·Bᵀ per matrix, whole population in one batch).
    #[arg(long)]
    pub perturbation: Option<PerturbationKind>,
    /// Rank r of the low-rank perturbation.
    #[arg(long)]
    pub rank: Option<usize>,
    /// Evaluate every k iterations (0 = no evaluation).
    #[arg(long)]
    pub eval_every: Option<u64>,
    /// Evaluate only the first k items of each multiple-choice prior suite (0 = all).
    #[arg(long)]
    pub prior_limit: Option<usize>,
    /// Under MPI: compare θ checksums across ranks every k iterations (0 = never).
    #[arg(long)]
    pub checksum_every: Option<u64>,
    /// Safetensors snapshot every k iterations (0 = none).
    #[arg(long)]
    pub checkpoint_every: Option<u64>,
    /// Worker threads (0 = all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Run directory.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Task option KEY=VALUE (TOML value), repeatable, e.g. `--task-opt minibatch=8`.
    #[arg(long = "task-opt", value_name = "KEY=VALUE")]
    pub task_opts: Vec<String>,
    /// `es` (f32 master weights, the default), `qes` (the GGUF's own Q8_0/Q4_0/Q4_1 codes, with
    /// error feedback; σ in code steps, default 0.01, α default 5e-4) or `grpo` (the RL baseline:
    /// GRPO by backpropagation, settings below).
    #[arg(long)]
    pub method: Option<Method>,
    /// QES: decay β of the error-feedback residual (default 0.9).
    #[arg(long)]
    pub residual_decay: Option<f32>,
    /// QES: round α·ĝ alone, without the residual (the vanishing update, for comparison).
    #[arg(long)]
    pub no_error_feedback: bool,
    /// QES: hold the residual `stored` (int8 per code, the default) or `replay` it from the last
    /// K steps' noise (no memory per code, K·N noise draws per update).
    #[arg(long)]
    pub residual: Option<evotune::es::qes::ResidualKind>,
    /// QES: K, the steps a replayed residual is rebuilt from (default 50).
    #[arg(long)]
    pub residual_window: Option<usize>,
    /// QES: train the file's own codes (`native`, the default) or every matrix as 8-bit `q8_0` codes.
    #[arg(long)]
    pub codes: Option<evotune::run::config::Codes>,
    /// QES: members evaluated per batch (default 0: the whole population in one batch); fewer hold
    /// fewer KV caches at once, with the same results.
    #[arg(long)]
    pub member_batch: Option<usize>,
    /// A variable for the model's chat template, KEY=VALUE (repeatable), e.g.
    /// `--chat-template-arg enable_thinking=true` for Qwen3 (whose thinking is off by default).
    #[arg(long = "chat-template-arg", value_name = "KEY=VALUE")]
    pub chat_template_args: Vec<String>,
    #[command(flatten)]
    pub grpo: GrpoArgs,
}

/// GRPO's settings (`--method grpo`; TOML table `[grpo]`, same names with underscores). Defaults:
/// `evotune::rl::GrpoParams::default`.
#[derive(Args, Debug, Default, Clone)]
pub struct GrpoArgs {
    /// GRPO: G, completions sampled per prompt (default 4).
    #[arg(long)]
    pub group: Option<usize>,
    /// GRPO: sampling temperature (default 0.7).
    #[arg(long)]
    pub temperature: Option<f32>,
    /// GRPO: nucleus sampling mass (default 1).
    #[arg(long)]
    pub top_p: Option<f32>,
    /// GRPO: AdamW learning rate (default 1e-5).
    #[arg(long)]
    pub lr: Option<f32>,
    /// GRPO: AdamW β₁ (default 0.9).
    #[arg(long)]
    pub adam_beta1: Option<f32>,
    /// GRPO: AdamW β₂ (default 0.999).
    #[arg(long)]
    pub adam_beta2: Option<f32>,
    /// GRPO: AdamW decoupled weight decay (default 0).
    #[arg(long)]
    pub weight_decay: Option<f32>,
    /// GRPO: clip of the gradient's global norm, 0 = none (default 1).
    #[arg(long)]
    pub grad_clip: Option<f32>,
    /// GRPO: β of the KL penalty toward the base model, k3 estimator (default 0.04).
    #[arg(long)]
    pub kl_beta: Option<f32>,
    /// GRPO: ε of the ratio clip (default 0.2).
    #[arg(long)]
    pub clip_eps: Option<f32>,
    /// GRPO: sequences per forward/backward pass, bounding activation memory (default 8).
    #[arg(long)]
    pub micro_batch: Option<usize>,
    /// GRPO: optimiser steps per sampled batch, μ (default 1).
    #[arg(long)]
    pub grpo_updates: Option<usize>,
}

impl GrpoArgs {
    /// The flags given, as the `[grpo]` table (None when none is given).
    fn table(&self) -> Option<toml::Table> {
        let mut t = toml::Table::new();
        let mut put = |k: &str, v: Option<toml::Value>| {
            if let Some(v) = v {
                t.insert(k.into(), v);
            }
        };
        // Through the f32's shortest decimal, so `1e-5` is stored as 1e-5, not 9.99999974e-6.
        let f = |x: Option<f32>| x.map(|v| toml::Value::Float(v.to_string().parse().expect("a float prints as one")));
        let i = |x: Option<usize>| x.map(|v| toml::Value::Integer(v as i64));
        put("group", i(self.group));
        put("temperature", f(self.temperature));
        put("top_p", f(self.top_p));
        put("lr", f(self.lr));
        put("adam_beta1", f(self.adam_beta1));
        put("adam_beta2", f(self.adam_beta2));
        put("weight_decay", f(self.weight_decay));
        put("grad_clip", f(self.grad_clip));
        put("kl_beta", f(self.kl_beta));
        put("clip_eps", f(self.clip_eps));
        put("micro_batch", i(self.micro_batch));
        put("updates", i(self.grpo_updates));
        (!t.is_empty()).then_some(t)
    }
}

/// `KEY=VALUE` pairs as a TOML table (a value that is not valid TOML is taken as a string).
pub fn task_opts_table(pairs: &[String]) -> anyhow::Result<toml::Table> {
    let mut table = toml::Table::new();
    for kv in pairs {
        let (k, v) = kv.split_once('=').ok_or_else(|| anyhow::anyhow!("`{kv}`: expected KEY=VALUE"))?;
        let value: toml::Value = match toml::from_str::<toml::Table>(&format!("v = {v}")) {
            Ok(mut t) => t.remove("v").expect("just parsed"),
            Err(_) => toml::Value::String(v.to_string()),
        };
        table.insert(k.trim().to_string(), value);
    }
    Ok(table)
}

impl SettingArgs {
    /// The flags as a partial config (unset flags stay `None`, so the TOML file or defaults apply).
    pub fn to_partial(&self) -> anyhow::Result<PartialConfig> {
        let task_options = if self.task_opts.is_empty() { None } else { Some(task_opts_table(&self.task_opts)?) };
        Ok(PartialConfig {
            model: self.model.clone(),
            task: self.task.clone(),
            priors: if self.priors.is_empty() { None } else { Some(self.priors.clone()) },
            population: self.population,
            sigma: self.sigma,
            alpha: self.alpha,
            iterations: self.iterations,
            seed: self.seed,
            noise: self.noise,
            mirrored: if self.mirrored { Some(true) } else { None },
            shaping: self.shaping,
            awd: self.awd,
            awd_lambda: self.awd_lambda,
            drift_budget: self.drift_budget,
            nonfinite_reward: self.nonfinite_reward,
            perturbation: self.perturbation,
            rank: self.rank,
            eval_every: self.eval_every,
            prior_limit: self.prior_limit,
            checksum_every: self.checksum_every,
            checkpoint_every: self.checkpoint_every,
            threads: self.threads,
            out: self.out.clone(),
            task_options,
            method: self.method,
            residual_decay: self.residual_decay,
            error_feedback: if self.no_error_feedback { Some(false) } else { None },
            residual: self.residual,
            residual_window: self.residual_window,
            codes: self.codes,
            member_batch: self.member_batch,
            chat_template_args: if self.chat_template_args.is_empty() {
                None
            } else {
                Some(task_opts_table(&self.chat_template_args)?)
            },
            grpo: self.grpo.table(),
        })
    }
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    #[arg(long, default_value = "smollm2-135m")]
    pub model: String,
    /// A variable for the model's chat template, KEY=VALUE (repeatable; a run's own come from its
    /// config), e.g. `--chat-template-arg enable_thinking=true` for Qwen3.
    #[arg(long = "chat-template-arg", value_name = "KEY=VALUE")]
    pub chat_template_args: Vec<String>,
    /// Target task (its test split is scored) or prior suite / JSONL file / `kl`.
    #[arg(long, required = true)]
    pub task: Vec<String>,
    /// Use a run's weights at its end (or at --iter K) instead of the model's own.
    #[arg(long, value_name = "RUN")]
    pub run: Option<PathBuf>,
    #[arg(long)]
    pub iter: Option<u64>,
    /// With --run: parameter groups reverted to θ0 first, as in `export --revert`.
    #[arg(long, requires = "run")]
    pub revert: Option<String>,
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Evaluate only the first k items of a multiple-choice suite (0 = all).
    #[arg(long, default_value_t = 0)]
    pub limit: usize,
    /// Task option KEY=VALUE (TOML value), repeatable.
    #[arg(long = "task-opt", value_name = "KEY=VALUE")]
    pub task_opts: Vec<String>,
    /// Weights of the forward: `f32` (dequantized), `quantized` (the GGUF's own Q8_0/Q4_0/Q4_1
    /// blocks, K-quants as Q8_0; integer kernels) or `q8_0` (every matrix quantized to Q8_0 at load).
    /// Default: `quantized` for a QES run's codes (as the run evaluated them), else `f32`.
    #[arg(long)]
    pub weights: Option<WeightFormat>,
}

#[derive(Args, Debug)]
pub struct ReplayArgs {
    pub run: PathBuf,
    /// Iteration K to rebuild (default: the last logged).
    #[arg(long)]
    pub to: Option<u64>,
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    /// One `.safetensors` file of θ (f32, HF names).
    Safetensors,
    /// A HF model directory transformers and evotune load: model.safetensors, config.json,
    /// tokenizer.json, tokenizer_config.json (with the chat template), generation_config.json.
    Hf,
    /// A llama.cpp GGUF (`--dtype f32|f16|q8_0`).
    Gguf,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    pub run: PathBuf,
    #[arg(long)]
    pub iter: Option<u64>,
    #[arg(long, value_enum, default_value = "safetensors")]
    pub format: ExportFormat,
    /// GGUF tensor type for matrices: `f32`, `f16` or `q8_0`. Default: f32; for a QES run with
    /// `--format gguf`, the source file itself with the tuned codes (its own quantization types).
    #[arg(long)]
    pub dtype: Option<ExportType>,
    /// Parameter groups to revert to θ0 before writing, comma-separated, named as `evotune
    /// attribute` prints them (e.g. `layers.3.mlp,embed`, `layers.7`, `attn`).
    #[arg(long)]
    pub revert: Option<String>,
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

#[derive(Args, Debug)]
pub struct AttributeArgs {
    pub run: PathBuf,
    /// Iteration K of the run (default: the last logged).
    #[arg(long)]
    pub iter: Option<u64>,
    /// Parameter groups: `block` (per block attn / mlp / norm, plus embed and final_norm),
    /// `layer`, `kind` or `tensor`.
    #[arg(long, default_value = "block")]
    pub by: evotune::run::attribution::Grouping,
    /// JSONL output (default RUN/attribution.jsonl); the heat map is written next to it as .png.
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Run directories to plot together.
    #[arg(required = true)]
    pub runs: Vec<PathBuf>,
    #[arg(long)]
    pub out: PathBuf,
    /// Extra curve on the drift plot, e.g. a predicted ‖θ−θ0‖ (repeatable): LABEL=FILE, FILE holding
    /// `iteration value` lines (`#` starts a comment); the label ends at the last `=`.
    #[arg(long = "drift-reference", value_name = "LABEL=FILE")]
    pub drift_reference: Vec<String>,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub which: BenchWhich,
}

#[derive(Subcommand, Debug)]
pub enum BenchWhich {
    /// Prefill and decode tokens/s at batch 1 and 16, ours vs candle's llama.
    Generate {
        #[arg(long, default_value = "smollm2-135m")]
        model: String,
        /// Print one JSON object per engine and batch size on stdout (the text goes to stderr).
        #[arg(long)]
        json: bool,
        /// `f32` (ours and candle's), or `quantized` / `q8_0` (ours on those weights, and ours on
        /// f32 in the same run).
        #[arg(long, default_value = "f32")]
        weights: WeightFormat,
    },
    /// Seconds per ES iteration on the reference workload (16 arith prompts, N = 8, greedy, 16
    /// new tokens), with prefill/decode rates, fraction of a GEMM probe and peak memory.
    EsIteration {
        #[arg(long, default_value = "smollm2-135m")]
        model: String,
        /// `full`, `lowrank`, or `both` (each mode's peak RSS is measured from its own start).
        #[arg(long, default_value = "both")]
        perturbation: String,
        #[arg(long, default_value_t = 1)]
        rank: usize,
        #[arg(long, default_value_t = 8)]
        population: usize,
        /// Timed iterations per mode (after one warm-up iteration).
        #[arg(long, default_value_t = 2)]
        iterations: usize,
        /// Worker threads (0 = all cores).
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// Also run the PyTorch + transformers reference loop on the same prompts (needs python3
        /// with torch, transformers, accelerate and gguf) and print the speed ratio.
        #[arg(long)]
        vs_torch: bool,
        /// Print one JSON object per mode on stdout (the text goes to stderr).
        #[arg(long)]
        json: bool,
        /// `es` (the f32 modes of --perturbation), or `qes` (those, then QES on the GGUF's own
        /// codes in the same run).
        #[arg(long, default_value = "es")]
        method: Method,
        /// QES: how the residual is held, `stored` or `replay` (window 50).
        #[arg(long, default_value = "stored")]
        residual: evotune::es::qes::ResidualKind,
        /// QES: members evaluated per batch (0: the whole population in one batch); fewer hold
        /// fewer KV caches at once.
        #[arg(long, default_value_t = 0)]
        member_batch: usize,
    },
    /// Seconds per GRPO step on the reference workload (16 arith prompts × G completions, ≤ 16 new
    /// tokens): sampling, forwards, backwards and AdamW, FLOPs and their fraction of the FMA peak,
    /// peak memory.
    Grpo {
        #[arg(long, default_value = "smollm2-135m")]
        model: String,
        #[arg(long, default_value_t = 16)]
        prompts: usize,
        #[arg(long, default_value_t = 4)]
        group: usize,
        /// Sequences per forward/backward pass.
        #[arg(long, default_value_t = 8)]
        micro_batch: usize,
        /// Timed steps (after one warm-up step).
        #[arg(long, default_value_t = 2)]
        steps: usize,
        /// Worker threads (0 = all cores).
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// Print one JSON object on stdout (the text goes to stderr).
        #[arg(long)]
        json: bool,
        /// Also time our backward against candle's autograd on the same model and rows (speed,
        /// memory, and the gradients' agreement; a build with --features bench).
        #[arg(long)]
        vs_candle: bool,
    },
    /// Noise throughput and the time of one update at d = 135M, N = 30.
    Es {
        #[arg(long, default_value_t = 134_515_008)]
        dim: usize,
        #[arg(long, default_value_t = 30)]
        population: usize,
        /// Print the figures as one JSON object on stdout (the text goes to stderr).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Where the two runs and the report go.
    #[arg(long, default_value = "runs/demo")]
    pub out: PathBuf,
    /// Iterations per run.
    #[arg(long, default_value_t = 16)]
    pub iterations: u64,
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Start over even if the demo's runs already exist (otherwise they are resumed).
    #[arg(long)]
    pub fresh: bool,
}
