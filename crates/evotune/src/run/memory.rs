//! Freed heap memory given back to the operating system between iterations.
//!
//! glibc's allocator keeps one arena per thread and returns a freed chunk to the system only when
//! it lies at the top of its arena. An evaluation allocates its KV caches and activations on the
//! pool's threads and frees them in another order, so without this an iteration's freed memory
//! stays resident and the next evaluation's allocations land beside it: the peak resident set
//! of a QES run grew by ≈ 40–70 MB from its first iteration to its third.

/// Returns the free pages of every arena to the system (`malloc_trim(0)`, glibc only; elsewhere
/// nothing).
pub fn give_back_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of the allocator's own arenas.
    unsafe {
        libc::malloc_trim(0);
    }
}
