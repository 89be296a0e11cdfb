//! One iteration's record, one line of the trajectory log: members, rewards and coefficients.
//!
//! Floats round-trip exactly: serde_json writes an f32 as its shortest decimal form and reads it
//! back to the same f32 (checked by a test). JSON has no NaN or infinity, so non-finite rewards
//! are written as the strings `"NaN"`, `"inf"` and `"-inf"`.

use crate::es::budget::StepDrift;
use crate::es::population::Member;

/// Everything one iteration did to θ: one line of the trajectory log.
///
/// `coefficients[n]` is member n's shaped fitness cₙ; the update is
/// θ ← θ + (α/N)·Σₙ cₙ·signₙ·ε_{noise_id(n)}. `rewards` are kept for the record (non-finite ones
/// are written as the strings "NaN", "inf", "-inf"); replay does not read them.
///
/// A drift-budgeted run also records the λ of this step's AWD (`awd_lambda`, read by replay in
/// place of the config's λ) and the drift the update measured (`drift`, the controller's input).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StepRecord {
    pub iteration: u64,
    pub members: Vec<Member>,
    #[serde(with = "lossless_f32s")]
    pub rewards: Vec<f32>,
    pub coefficients: Vec<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub awd_lambda: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<StepDrift>,
}

/// serde helpers: `Vec<f32>` with non-finite values as strings (JSON has no NaN/inf).
pub mod lossless_f32s {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum F32OrText {
        Num(f32),
        Text(String),
    }

    pub fn serialize<S: Serializer>(v: &[f32], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|&x| {
            if x.is_finite() {
                F32OrText::Num(x)
            } else if x.is_nan() {
                F32OrText::Text("NaN".into())
            } else if x > 0.0 {
                F32OrText::Text("inf".into())
            } else {
                F32OrText::Text("-inf".into())
            }
        }))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f32>, D::Error> {
        let raw = Vec::<F32OrText>::deserialize(d)?;
        raw.into_iter()
            .map(|x| match x {
                F32OrText::Num(v) => Ok(v),
                F32OrText::Text(t) => match t.as_str() {
                    "NaN" => Ok(f32::NAN),
                    "inf" => Ok(f32::INFINITY),
                    "-inf" => Ok(f32::NEG_INFINITY),
                    other => Err(serde::de::Error::custom(format!(
                        "reward `{other}`: expected a number, \"NaN\", \"inf\" or \"-inf\""
                    ))),
                },
            })
            .collect()
    }
}
