//! Training on every model family: ES with AWD, low-rank ES and QES run on the tiny Llama 3,
//! Mistral, Qwen2, Qwen3 and Gemma 3 models of `crates/evotune/tests/data/tiny` (see
//! `scripts/tiny_models.py`), and their exports load and generate. Their forward passes are checked
//! against transformers in the library's `families` test; this file checks that the rest of the
//! tool runs on them.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::{evotune, run_ok};

const FAMILIES: [&str; 5] = ["llama3", "mistral", "qwen2", "qwen3", "gemma3"];

fn tiny(family: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../evotune/tests/data/tiny").join(family)
}

/// `train` with a small real workload on `model`: conciseness prompts, 4 members, 2 iterations.
fn train(model: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut c = evotune();
    c.args(["train", "--task", "conciseness", "--population", "4", "--mirrored", "--iterations", "2"])
        .args(["--task-opt", "minibatch=2", "--task-opt", "max_new_tokens=6", "--model"])
        .arg(model)
        .arg("--out")
        .arg(out)
        .args(extra);
    c
}

fn metrics(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// ES + AWD-l2 with the KL prior on the HF form: weights move (per kind, the family's own tensors
/// included), KL is measured; the run exports as a HF directory that generates.
#[test]
fn es_with_awd_trains_and_exports_every_family() {
    let tmp = tempfile::tempdir().unwrap();
    for family in FAMILIES {
        let run = tmp.path().join(format!("{family}-es"));
        let extra = ["--awd", "l2", "--prior", "kl", "--eval-every", "2", "--alpha", "0.05", "--sigma", "0.05"];
        run_ok(train(&tiny(family).join("hf"), &run, &extra).args(["--threads", "2"]));
        let m = metrics(&run);
        let last_eval = m.iter().rev().find(|l| l["type"] == "eval").expect("an eval line");
        let drift = &last_eval["drift"];
        assert!(drift["total"].as_f64().unwrap() > 0.0, "{family}: {drift}");
        let kinds = drift["per_kind"].as_object().unwrap_or_else(|| panic!("{family}: {drift}"));
        if family == "qwen3" {
            assert!(kinds["q_norm"].as_f64().unwrap() > 0.0, "{family}: {kinds:?}");
        }
        if family == "gemma3" {
            assert!(kinds["post_attn_norm"].as_f64().unwrap() > 0.0, "{family}: {kinds:?}");
        }
        if family == "qwen2" {
            assert!(kinds["q_bias"].as_f64().unwrap() > 0.0, "{family}: {kinds:?}");
        }
        assert!(last_eval.to_string().contains("kl"), "{family}: no KL in {last_eval}");

        let hf = tmp.path().join(format!("{family}-hf"));
        run_ok(evotune().args(["export"]).arg(&run).args(["--format", "hf", "--out"]).arg(&hf));
        generates(&hf);
    }
}

/// `generate` runs on an exported model and prints something.
fn generates(model: &Path) {
    let out = run_ok(evotune().args(["generate", "--max-new-tokens", "4", "--prompt", "Hi", "--model"]).arg(model));
    assert!(!out.stdout.is_empty(), "{} generated nothing", model.display());
}

/// Low-rank ES on the GGUF form, exported as GGUF (F16) that generates, and QES on its codes (F16
/// matrices become Q8_0 codes at load), with the same codes for 1 and 2 threads.
#[test]
fn lowrank_and_qes_train_every_family() {
    let tmp = tempfile::tempdir().unwrap();
    for family in FAMILIES {
        let gguf = tiny(family).join("model.gguf");
        let lowrank = tmp.path().join(format!("{family}-lowrank"));
        run_ok(&mut train(
            &gguf,
            &lowrank,
            &["--perturbation", "lowrank", "--rank", "2", "--eval-every", "0", "--threads", "2"],
        ));
        let iters: Vec<_> = metrics(&lowrank).into_iter().filter(|l| l["type"] == "iteration").collect();
        assert_eq!(iters.len(), 2, "{family}");
        let gguf_out = tmp.path().join(format!("{family}.gguf"));
        run_ok(
            evotune()
                .args(["export"])
                .arg(&lowrank)
                .args(["--format", "gguf", "--dtype", "f16", "--out"])
                .arg(&gguf_out),
        );
        generates(&gguf_out);

        let checksum = |threads: &str| {
            let out = tmp.path().join(format!("{family}-qes-{threads}"));
            let extra =
                ["--method", "qes", "--alpha", "0.05", "--sigma", "0.05", "--eval-every", "0", "--threads", threads];
            let o = run_ok(&mut train(&gguf, &out, &extra));
            let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
            text.split("θ checksum ").nth(1).unwrap_or_else(|| panic!("{family}: no checksum in {text}"))[..16]
                .to_string()
        };
        assert_eq!(checksum("1"), checksum("2"), "{family}: QES codes depend on the thread count");
    }
}

/// `--chat-template-arg` is part of a run: written to its config.toml, so a resumed run renders
/// the same prompts.
#[test]
fn chat_template_args_are_kept_in_the_run_config() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("qwen3-thinking");
    let extra = ["--eval-every", "0", "--chat-template-arg", "enable_thinking=true"];
    run_ok(&mut train(&tiny("qwen3").join("hf"), &run, &extra));
    let config: toml::Table = std::fs::read_to_string(run.join("config.toml")).unwrap().parse().unwrap();
    assert_eq!(config["chat_template_args"]["enable_thinking"].as_bool(), Some(true), "{config}");
    run_ok(evotune().args(["train", "--resume"]).arg(&run).args(["--iterations", "3"]));
}
