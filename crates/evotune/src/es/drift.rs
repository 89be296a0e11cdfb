//! STUB (the ES work defines it).
use std::collections::BTreeMap;
use crate::error::Result;
use crate::es::Anchor;
use crate::model::Params;

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Drift { pub total: f64, pub per_layer: BTreeMap<String, f64>, pub per_kind: BTreeMap<String, f64> }

pub fn drift(theta: &Params, anchor: &Anchor) -> Result<Drift> { let _ = (theta, anchor); todo!() }
