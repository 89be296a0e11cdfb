//! STUB: evaluation contract (the tasks work fills it in).
use std::collections::BTreeMap;

use crate::error::Result;
use crate::model::{Model, Params};
use crate::tasks::{Item, Reward, Task, TaskOptions};

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TaskScore {
    pub task: String,
    pub accuracy: f64,
    pub mean_reward: f64,
    pub metrics: BTreeMap<String, f64>,
}

pub enum PriorTask {}

pub fn prior_task(spec: &str, model: &Model, theta0: &Params, opts: &TaskOptions) -> Result<PriorTask> {
    let _ = (spec, model, theta0, opts);
    todo!()
}
pub fn target_rewards(model: &Model, params: &Params, task: &dyn Task, items: &[&Item]) -> Result<Vec<Reward>> {
    let _ = (model, params, task, items);
    todo!()
}
pub fn evaluate_target(model: &Model, params: &Params, task: &dyn Task) -> Result<TaskScore> {
    let _ = (model, params, task);
    todo!()
}
pub fn evaluate_prior(model: &Model, params: &Params, prior: &PriorTask) -> Result<TaskScore> {
    let _ = (model, params, prior);
    todo!()
}
