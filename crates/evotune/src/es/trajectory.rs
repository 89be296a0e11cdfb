//! STUB (the ES work defines it).
use std::path::Path;
use crate::error::Result;
use crate::es::{EsState, StepRecord, Strategy};

pub fn read_trajectory(path: &Path) -> Result<Vec<StepRecord>> { let _ = path; todo!() }
pub fn replay(strategy: &Strategy, state: &mut EsState, records: &[StepRecord], upto: u64) -> Result<()> { let _ = (strategy, state, records, upto); todo!() }
