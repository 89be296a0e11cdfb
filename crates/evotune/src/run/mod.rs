//! STUB: the run loop (filled in by the run work).
