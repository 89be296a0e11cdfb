//! Attribution: which parameter groups carry a run's forgetting, and which its gain.
//!
//! For each group g, θ_K is evaluated with g reverted to θ0 (every other tensor kept at θ_K), on
//! the run's own target test split and priors. For a measure S (the KL probe's mean KL, a suite's
//! accuracy, the target's accuracy), g *carries*
//!
//!   ΔS_g = S(θ_K) − S(θ_K with g ← θ0g)
//!
//! of it: ΔKL_g > 0 is forgetting that reverting g removes, Δtarget_g > 0 is gain it would lose.
//! The effects of groups need not add up (the model is not linear in θ); each row is one
//! surgical revert, exactly as `evotune export --revert g` would write it.
//!
//! Groups (`--by`): `block` (default) — `embed`, per block `layers.i.attn` (q/k/v/o and their
//! biases), `layers.i.mlp` (gate/up/down), `layers.i.norm` (every norm of the block), then
//! `final_norm` (and `lm_head` when untied); `layer` — `embed`, `layers.i`, `final_norm`; `kind`
//! — `embed`, `attn`, `mlp`, `norm`, `final_norm`; `tensor` — each tensor by its HF name.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::error::{Error, Result};
use crate::es::drift::squared_distance;
use crate::model::{Layout, Model, Params, TensorInfo, TensorKind};
use crate::run::comm::SingleProcess;
use crate::run::eval_split::evaluate_split;
use crate::tasks::eval::TaskScore;
use crate::tasks::{PriorTask, Task};

/// How parameters are grouped (see the module doc).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Grouping {
    #[default]
    Block,
    Layer,
    Kind,
    Tensor,
}
from_str_by_serde!(Grouping);

/// A named set of tensors.
#[derive(Clone, Debug, PartialEq)]
pub struct Group {
    pub name: String,
    pub tensors: Vec<usize>,
}

/// The part of a block a tensor belongs to: `attn`, `mlp` or `norm` (`None` outside the blocks).
fn part(kind: TensorKind) -> &'static str {
    use TensorKind::*;
    match kind {
        Q | K | V | O | QBias | KBias | VBias => "attn",
        Gate | Up | Down => "mlp",
        AttnNorm | MlpNorm | PostAttnNorm | PostMlpNorm | QNorm | KNorm => "norm",
        Embedding => "embed",
        FinalNorm => "final_norm",
        LmHead => "lm_head",
        Other => "other",
    }
}

/// The group name of `info` under `by`.
fn group_name(info: &TensorInfo, by: Grouping) -> String {
    let p = part(info.kind);
    match (by, info.layer) {
        (Grouping::Tensor, _) => info.name.clone(),
        (Grouping::Block, Some(l)) => format!("layers.{l}.{p}"),
        (Grouping::Layer, Some(l)) => format!("layers.{l}"),
        (Grouping::Kind, _) | (_, None) => p.to_string(),
    }
}

/// The groups of `layout` under `by`, in tensor order of their first tensor.
pub fn groups(layout: &Layout, by: Grouping) -> Vec<Group> {
    let mut out: Vec<Group> = Vec::new();
    for (id, info) in layout.tensors().iter().enumerate() {
        let name = group_name(info, by);
        match out.iter_mut().find(|g| g.name == name) {
            Some(g) => g.tensors.push(id),
            None => out.push(Group { name, tensors: vec![id] }),
        }
    }
    out
}

/// The tensors named by comma-separated group names, each under whichever grouping knows it
/// (`layers.3.mlp`, `layers.3`, `mlp`, or a tensor's HF name).
pub fn named_tensors(layout: &Layout, names: &str) -> Result<Vec<usize>> {
    let mut ids = Vec::new();
    for name in names.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let found = [Grouping::Block, Grouping::Layer, Grouping::Kind, Grouping::Tensor]
            .into_iter()
            .find_map(|by| groups(layout, by).into_iter().find(|g| g.name == name))
            .ok_or_else(|| Error::Task {
                task: "revert".into(),
                problem: format!(
                    "no parameter group `{name}` (names as `evotune attribute` prints them: embed, layers.3.attn, \
                     layers.3, mlp, final_norm, or a tensor's name)"
                ),
            })?;
        ids.extend(found.tensors);
    }
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

/// A run's θ_K with the groups named in `names` reverted to θ0 (`export --revert`,
/// `eval --run --revert`); returns how many tensors were reverted. ES runs only: a QES run's
/// weights are its codes.
pub fn revert_named(w: &mut crate::run::replay::RunWeights, names: &str) -> Result<usize> {
    if w.codes.is_some() {
        return Err(Error::Task {
            task: "revert".into(),
            problem: "applies to an ES run's f32 weights; a QES run's weights are its codes".into(),
        });
    }
    let ids = named_tensors(w.theta.layout(), names)?;
    revert(&mut w.theta, &w.theta0, &ids);
    Ok(ids.len())
}

/// θ ← θ0 on `tensors`.
pub fn revert(theta: &mut Params, theta0: &Params, tensors: &[usize]) {
    for &id in tensors {
        theta.tensor_mut(id).copy_from_slice(theta0.tensor(id));
    }
}

/// Every measure of one evaluation, by name: `target`, `<suite>` (accuracy) and `kl`.
pub fn measures(target: &TaskScore, priors: &[TaskScore]) -> BTreeMap<String, f64> {
    let mut m = BTreeMap::from([("target".to_string(), target.accuracy)]);
    for p in priors {
        match p.metrics.get("kl") {
            Some(kl) => m.insert(p.task.clone(), *kl),
            None => m.insert(p.task.clone(), p.accuracy),
        };
    }
    m
}

/// One group's row: its size, its drift, and how much of each measure it carries.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GroupEffect {
    pub group: String,
    pub params: usize,
    /// ‖θ_K − θ0‖ over the group.
    pub drift: f64,
    /// The measures with the group reverted.
    pub reverted: BTreeMap<String, f64>,
    /// S(θ_K) − S(reverted), per measure.
    pub carried: BTreeMap<String, f64>,
}

/// Reverts each group of `by` in turn and evaluates (see the module doc). `done(i, n, row)` is
/// called after each group. Returns the measures of θ_K itself and one row per group.
pub fn attribute(
    model: &Model,
    theta: &Params,
    theta0: &Params,
    target: &dyn Task,
    priors: &[PriorTask],
    by: Grouping,
    done: &mut dyn FnMut(usize, usize, &GroupEffect),
) -> Result<(BTreeMap<String, f64>, Vec<GroupEffect>)> {
    let evaluate = |w: &Params| -> Result<BTreeMap<String, f64>> {
        let (t, p) = evaluate_split(model, w, target, priors, &SingleProcess, 0)?.expect("a single process is root");
        Ok(measures(&t, &p))
    };
    let full = evaluate(theta)?;
    let groups = groups(theta.layout(), by);
    let mut work = theta.clone();
    let mut rows = Vec::with_capacity(groups.len());
    for (i, g) in groups.iter().enumerate() {
        let sq: f64 = g.tensors.iter().map(|&id| squared_distance(theta.tensor(id), theta0.tensor(id))).sum();
        let params = g.tensors.iter().map(|&id| theta.tensor(id).len()).sum();
        revert(&mut work, theta0, &g.tensors);
        let reverted = evaluate(&work)?;
        for &id in &g.tensors {
            work.tensor_mut(id).copy_from_slice(theta.tensor(id));
        }
        let carried = full.iter().map(|(k, v)| (k.clone(), v - reverted.get(k).copied().unwrap_or(f64::NAN))).collect();
        let row = GroupEffect { group: g.name.clone(), params, drift: sq.sqrt(), reverted, carried };
        done(i, groups.len(), &row);
        rows.push(row);
    }
    Ok((full, rows))
}

/// The rows sorted by KL carried (largest first; by target gain when the run has no KL probe).
pub fn sorted_by_kl(rows: &[GroupEffect]) -> Vec<&GroupEffect> {
    let key = |r: &GroupEffect| r.carried.get("kl").or(r.carried.get("target")).copied().unwrap_or(f64::NAN);
    let mut out: Vec<&GroupEffect> = rows.iter().collect();
    out.sort_by(|a, b| key(b).total_cmp(&key(a)));
    out
}

/// A Markdown table of the rows, sorted by KL carried: group, size, drift, then each measure's
/// carried share (and KL per unit of target gain).
pub fn table(full: &BTreeMap<String, f64>, rows: &[GroupEffect]) -> String {
    let measures: Vec<&String> = full.keys().collect();
    let mut out = String::new();
    let head: Vec<String> = measures.iter().map(|m| format!("Δ{m}")).collect();
    let _ = writeln!(out, "| group | params | ‖δ‖ | {} | ΔKL/Δtarget |", head.join(" | "));
    let _ = writeln!(out, "|---|---:|---:|{}---:|", "---:|".repeat(measures.len()));
    let _ = writeln!(
        out,
        "| (θ_K itself) | | | {} | |",
        measures.iter().map(|m| format!("{:.4}", full[*m])).collect::<Vec<_>>().join(" | ")
    );
    for r in sorted_by_kl(rows) {
        let cells: Vec<String> =
            measures.iter().map(|m| format!("{:+.4}", r.carried.get(*m).copied().unwrap_or(f64::NAN))).collect();
        let ratio = match (r.carried.get("kl"), r.carried.get("target")) {
            (Some(kl), Some(t)) if *t > 0.0 => format!("{:.3}", kl / t),
            _ => "–".into(),
        };
        let _ = writeln!(out, "| {} | {} | {:.3} | {} | {ratio} |", r.group, r.params, r.drift, cells.join(" | "));
    }
    out
}

/// The first line of `attribution.jsonl`: what was attributed, and θ_K's own measures.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Header {
    pub iteration: u64,
    pub by: Grouping,
    pub measures: BTreeMap<String, f64>,
}

/// Writes the header line and one line per row (atomically: a killed run leaves no partial file).
pub fn write_jsonl(path: &std::path::Path, header: &Header, rows: &[GroupEffect]) -> Result<()> {
    let mut text = serde_json::to_string(header).expect("a header serialises");
    text.push('\n');
    for r in rows {
        text.push_str(&serde_json::to_string(r).expect("a row serialises"));
        text.push('\n');
    }
    crate::files::write_atomic_bytes(path, text.as_bytes())
}

/// Reads what [`write_jsonl`] wrote; errors name the file and the line.
pub fn read_jsonl(path: &std::path::Path) -> Result<(Header, Vec<GroupEffect>)> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let bad = |line: usize, e: serde_json::Error| Error::RunDir {
        path: path.to_owned(),
        problem: format!("line {line}: {e}"),
    };
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    let (i, first) = lines.next().ok_or_else(|| Error::RunDir { path: path.to_owned(), problem: "is empty".into() })?;
    let header: Header = serde_json::from_str(first).map_err(|e| bad(i + 1, e))?;
    let rows = lines.map(|(i, l)| serde_json::from_str(l).map_err(|e| bad(i + 1, e))).collect::<Result<_>>()?;
    Ok((header, rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Layout {
        let mut l = Layout::new();
        l.push("model.embed_tokens.weight", vec![4, 2]);
        for i in 0..2 {
            for t in
                ["input_layernorm", "self_attn.q_proj", "self_attn.o_proj", "post_attention_layernorm", "mlp.up_proj"]
            {
                l.push(format!("model.layers.{i}.{t}.weight"), vec![2]);
            }
        }
        l.push("model.norm.weight", vec![2]);
        l
    }

    #[test]
    fn groups_by_block_layer_and_kind() {
        let l = layout();
        let names = |by| groups(&l, by).into_iter().map(|g| g.name).collect::<Vec<_>>();
        assert_eq!(
            names(Grouping::Block),
            [
                "embed",
                "layers.0.norm",
                "layers.0.attn",
                "layers.0.mlp",
                "layers.1.norm",
                "layers.1.attn",
                "layers.1.mlp",
                "final_norm"
            ]
        );
        assert_eq!(names(Grouping::Layer), ["embed", "layers.0", "layers.1", "final_norm"]);
        assert_eq!(names(Grouping::Kind), ["embed", "norm", "attn", "mlp", "final_norm"]);
        assert_eq!(groups(&l, Grouping::Kind)[1].tensors, [1, 4, 6, 9]);
        assert_eq!(groups(&l, Grouping::Block)[2].tensors, [2, 3]);
        // Every tensor is in exactly one group.
        for by in [Grouping::Block, Grouping::Layer, Grouping::Kind, Grouping::Tensor] {
            let mut all: Vec<usize> = groups(&l, by).into_iter().flat_map(|g| g.tensors).collect();
            all.sort_unstable();
            assert_eq!(all, (0..l.len()).collect::<Vec<_>>(), "{by:?}");
        }
    }

    #[test]
    fn names_resolve_across_groupings() {
        let l = layout();
        assert_eq!(named_tensors(&l, "layers.1.attn, embed").unwrap(), [0, 7, 8]);
        assert_eq!(named_tensors(&l, "mlp,layers.0").unwrap(), [1, 2, 3, 4, 5, 10]);
        assert_eq!(named_tensors(&l, "model.norm.weight").unwrap(), [11]);
        let e = named_tensors(&l, "layers.9.mlp").unwrap_err().to_string();
        assert!(e.contains("layers.9.mlp"), "{e}");
    }
}
