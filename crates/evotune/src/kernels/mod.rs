//! STUB: compute kernels (filled in by the forward work).
