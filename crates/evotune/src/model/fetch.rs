//! STUB
pub const DEFAULT_MODEL: &str = "smollm2-135m";
