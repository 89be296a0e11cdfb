//! Deterministic train/test split and per-iteration minibatches.
//!
//! Split: item i goes to test when u(i) < f, with u(i) = hash(seed, prompt ‖ answer) / 2⁶⁴ and f the
//! test fraction. The decision depends only on the item's own text and the seed, so adding lines to
//! a file never moves an existing item from one side to the other, and duplicates land together.

use crate::tasks::rng::{hash_str, mix64, Rng};
use crate::tasks::Item;
use crate::tokenizer::Prompt;

/// The text an item is hashed by: its prompt and its answer.
fn item_key(item: &Item) -> String {
    let prompt = match &item.prompt {
        Prompt::Chat { system, user } => format!("chat\u{1f}{}\u{1f}{}", system.as_deref().unwrap_or(""), user),
        Prompt::Raw(text) => format!("raw\u{1f}{text}"),
    };
    format!("{prompt}\u{1e}{}", item.answer)
}

/// u ∈ [0, 1) from the item's seeded hash.
pub fn split_coordinate(item: &Item, seed: u64) -> f64 {
    (hash_str(seed, &item_key(item)) >> 11) as f64 / (1u64 << 53) as f64
}

/// Splits `items` into (train, test) with about `test_fraction` of them in test, keeping file
/// order within each side; then keeps at most `max_train` / `max_test` of each (0 = all).
pub fn split_items(
    items: Vec<Item>,
    seed: u64,
    test_fraction: f64,
    max_train: usize,
    max_test: usize,
) -> (Vec<Item>, Vec<Item>) {
    let (mut test, mut train): (Vec<Item>, Vec<Item>) =
        items.into_iter().partition(|item| split_coordinate(item, seed) < test_fraction);
    if max_train > 0 {
        train.truncate(max_train);
    }
    if max_test > 0 {
        test.truncate(max_test);
    }
    (train, test)
}

/// The items of ES iteration `iteration`: `size` distinct items drawn without replacement by a
/// seeded partial Fisher–Yates shuffle keyed by (seed, iteration), returned in their original
/// order. `size = 0` or `size ≥ items.len()` returns every item.
pub fn minibatch<T>(items: &[T], size: usize, seed: u64, iteration: u64) -> Vec<&T> {
    if size == 0 || size >= items.len() {
        return items.iter().collect();
    }
    let mut rng = Rng::new(mix64(seed) ^ mix64(iteration.wrapping_add(0x6d69_6e69)));
    let mut idx: Vec<usize> = (0..items.len()).collect();
    for i in 0..size {
        let j = i + rng.index(items.len() - i);
        idx.swap(i, j);
    }
    let mut chosen = idx[..size].to_vec();
    chosen.sort_unstable();
    chosen.into_iter().map(|i| &items[i]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(i: usize) -> Item {
        Item { prompt: Prompt::Chat { system: None, user: format!("q{i}") }, answer: format!("{i}") }
    }

    #[test]
    fn split_is_stable_and_near_fraction() {
        let items: Vec<Item> = (0..2000).map(item).collect();
        let (train, test) = split_items(items.clone(), 7, 0.25, 0, 0);
        assert_eq!(train.len() + test.len(), 2000);
        let frac = test.len() as f64 / 2000.0;
        assert!((frac - 0.25).abs() < 0.05, "test fraction {frac}");
        // Adding items does not move existing ones.
        let mut more = items;
        more.extend((2000..2500).map(item));
        let (_, test2) = split_items(more, 7, 0.25, 0, 0);
        assert_eq!(&test2[..test.len()], &test[..]);
    }

    #[test]
    fn minibatch_is_seeded_and_distinct() {
        let items: Vec<usize> = (0..50).collect();
        let a = minibatch(&items, 10, 3, 5);
        let b = minibatch(&items, 10, 3, 5);
        let c = minibatch(&items, 10, 3, 6);
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mut d: Vec<usize> = a.iter().map(|x| **x).collect();
        d.dedup();
        assert_eq!(d.len(), 10);
        assert_eq!(minibatch(&items, 0, 3, 5).len(), 50);
    }
}
