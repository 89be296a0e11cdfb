//! Row of a row-major index without a division (the hot loops over sparse positions: the QES
//! members' corrections and the code lookups of their moves).

/// ⌊i / k⌋ without a division: the high half of i·m with m = ⌈2⁶⁴/k⌉. With i = q·k + ρ and
/// m·k = 2⁶⁴ + e (0 ≤ e < k), i·m/2⁶⁴ = q + ρ/k + i·e/(k·2⁶⁴), and the last term is below 1/k
/// whenever i·k < 2⁶⁴, so the floor is q for every index of a matrix of fewer than 2³² elements.
#[derive(Clone, Copy)]
pub(crate) struct RowOf {
    m: u64,
}

impl RowOf {
    pub(crate) fn new(k: usize) -> RowOf {
        assert!((2..1 << 32).contains(&k), "RowOf: row length {k}");
        RowOf { m: (u64::MAX / k as u64) + 1 }
    }

    #[inline(always)]
    pub(crate) fn of(self, i: usize) -> usize {
        debug_assert!(i < 1 << 32);
        ((i as u128 * self.m as u128) >> 64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The multiply-high quotient equals the division at and around every multiple of k, for
    /// the model's row lengths and awkward ones, up to the largest index.
    #[test]
    fn row_of_is_the_quotient() {
        for k in [2usize, 3, 32, 576, 1536, 4096, 14336, 65_535, 1 << 20, (1 << 32) - 1] {
            let row_of = RowOf::new(k);
            let top = (1usize << 32) - 1;
            let multiples = (0..2000).map(|q| q * k).chain((1..2000).map(|q| top / k / q * k));
            for base in multiples.filter(|&b| b <= top) {
                for i in base.saturating_sub(2)..=(base + 2).min(top) {
                    assert_eq!(row_of.of(i), i / k, "{i} / {k}");
                }
            }
            assert_eq!(row_of.of(top), top / k, "{top} / {k}");
        }
    }
}
