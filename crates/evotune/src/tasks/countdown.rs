//! Countdown: combine 3–4 given numbers with + − × ÷ (each exactly once) to reach a target.
//!
//! Prompt, prefill and reward follow the reference code (es-awd `tasks/countdown`):
//! - system: "You are a helpful assistant. You first think …"; user: "Using the numbers [..],
//!   create an equation that equals T. …"; the reply is prefilled with
//!   `Let me solve this step by step.\n<think>`.
//! - reward = 0.1·format + answer, where format is scored on `"<think>" + completion`:
//!   1.0 when the whole text is `<think>…</think>\n<answer>…</answer>` (one trailing newline
//!   allowed, as Python's `$` allows), else 0.1·[a `<think>…</think>` pair] + 0.5·[an
//!   `<answer>…</answer>` pair]; answer is 1 when the **last** `<answer>…</answer>` holds only
//!   digits, `+-*/()` and spaces, uses exactly the given multiset of numbers, and evaluates to the
//!   target. Correct ⇔ answer = 1.
//! - Evaluation is exact rational arithmetic (the reference uses Python `eval` and |x − T| < 1e-5);
//!   `**` and `//`, which Python's `eval` would accept, are rejected as not being + − × ÷. Division
//!   by zero, overflow (|numerator| or |denominator| past 2⁶³), literals of more than 18 digits,
//!   nesting deeper than 64 and anything unparsable score 0.
//!
//! Instances are generated from a seed and are solvable by construction: the target is drawn from
//! the integers in 1..=100 that an exhaustive search over all expressions reaches.

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::tasks::rng::Rng;
use crate::tasks::{Item, Reward, Task, TaskOptions};
use crate::tokenizer::Prompt;

pub const SYSTEM: &str = "You are a helpful assistant. You first think about the reasoning process in your mind and then provide the user with the answer.";
pub const PREFILL: &str = "Let me solve this step by step.\n<think>";
const MAX_NEW_TOKENS: usize = 256;
const MAX_DEPTH: usize = 64;

// === Exact rationals ===

/// p/q in lowest terms, q > 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rat {
    p: i64,
    q: i64,
}

fn gcd(mut a: i128, mut b: i128) -> i128 {
    a = a.abs();
    b = b.abs();
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

impl Rat {
    pub fn int(v: i64) -> Rat {
        Rat { p: v, q: 1 }
    }
    /// p/q reduced; `None` on q = 0 or when the reduced terms leave i64.
    fn new(p: i128, q: i128) -> Option<Rat> {
        if q == 0 {
            return None;
        }
        let g = gcd(p, q).max(1);
        let (mut p, mut q) = (p / g, q / g);
        if q < 0 {
            (p, q) = (-p, -q);
        }
        Some(Rat { p: i64::try_from(p).ok()?, q: i64::try_from(q).ok()? })
    }
    fn add(self, o: Rat) -> Option<Rat> {
        Rat::new(self.p as i128 * o.q as i128 + o.p as i128 * self.q as i128, self.q as i128 * o.q as i128)
    }
    fn sub(self, o: Rat) -> Option<Rat> {
        self.add(Rat { p: o.p.checked_neg()?, q: o.q })
    }
    fn mul(self, o: Rat) -> Option<Rat> {
        Rat::new(self.p as i128 * o.p as i128, self.q as i128 * o.q as i128)
    }
    fn div(self, o: Rat) -> Option<Rat> {
        Rat::new(self.p as i128 * o.q as i128, self.q as i128 * o.p as i128)
    }
    pub fn as_int(self) -> Option<i64> {
        (self.q == 1).then_some(self.p)
    }
}

// === Parsing and evaluating an answer ===

/// Recursive-descent parser over `expr := term (('+'|'-') term)*`, `term := factor (('*'|'/')
/// factor)*`, `factor := ('+'|'-') factor | number | '(' expr ')'` — Python's precedence.
struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    depth: usize,
    literals: Vec<i64>,
}

impl Parser<'_> {
    fn skip_spaces(&mut self) {
        while self.i < self.s.len() && self.s[self.i] == b' ' {
            self.i += 1;
        }
    }
    fn peek(&mut self) -> Option<u8> {
        self.skip_spaces();
        self.s.get(self.i).copied()
    }
    fn expr(&mut self) -> Option<Rat> {
        let mut v = self.term()?;
        while let Some(c @ (b'+' | b'-')) = self.peek() {
            self.i += 1;
            let r = self.term()?;
            v = if c == b'+' { v.add(r)? } else { v.sub(r)? };
        }
        Some(v)
    }
    fn term(&mut self) -> Option<Rat> {
        let mut v = self.factor()?;
        while let Some(c @ (b'*' | b'/')) = self.peek() {
            self.i += 1;
            let r = self.factor()?;
            v = if c == b'*' { v.mul(r)? } else { v.div(r)? };
        }
        Some(v)
    }
    fn factor(&mut self) -> Option<Rat> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return None;
        }
        let v = match self.peek()? {
            b'+' => {
                self.i += 1;
                self.factor()?
            }
            b'-' => {
                self.i += 1;
                let v = self.factor()?;
                Rat { p: v.p.checked_neg()?, q: v.q }
            }
            b'(' => {
                self.i += 1;
                let v = self.expr()?;
                if self.peek()? != b')' {
                    return None;
                }
                self.i += 1;
                v
            }
            c if c.is_ascii_digit() => {
                let start = self.i;
                while self.i < self.s.len() && self.s[self.i].is_ascii_digit() {
                    self.i += 1;
                }
                let digits = &self.s[start..self.i];
                // Python rejects leading zeros ("05"); more than 18 digits cannot fit an i64.
                if digits.len() > 18 || (digits.len() > 1 && digits[0] == b'0' && digits.iter().any(|&d| d != b'0')) {
                    return None;
                }
                let n: i64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
                self.literals.push(n);
                Rat::int(n)
            }
            _ => return None,
        };
        self.depth -= 1;
        Some(v)
    }
}

/// Evaluates an answer expression; returns its value and the number literals it uses, or `None`
/// when it is not a well-formed + − × ÷ expression (or divides by zero, or overflows).
pub fn evaluate(expr: &str) -> Option<(Rat, Vec<i64>)> {
    if expr.is_empty() || !expr.bytes().all(|c| c.is_ascii_digit() || b"+-*/() ".contains(&c)) {
        return None;
    }
    let mut p = Parser { s: expr.as_bytes(), i: 0, depth: 0, literals: Vec::new() };
    let v = p.expr()?;
    if p.peek().is_some() {
        return None;
    }
    Some((v, p.literals))
}

// === Reward ===

/// The contents of every non-overlapping `<answer>…</answer>` (shortest match), left to right.
fn answer_contents(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(a) = rest.find("<answer>") {
        let after = &rest[a + "<answer>".len()..];
        match after.find("</answer>") {
            Some(b) => {
                out.push(&after[..b]);
                rest = &after[b + "</answer>".len()..];
            }
            None => break,
        }
    }
    out
}

/// True when `open` occurs and `close` occurs somewhere after it.
fn has_pair(text: &str, open: &str, close: &str) -> bool {
    text.find(open).is_some_and(|a| text[a + open.len()..].contains(close))
}

/// Format score of a full response (`"<think>" + completion`): 1, or 0.1·think + 0.5·answer.
pub fn format_score(response: &str) -> f32 {
    let full = |s: &str| -> bool {
        let sep = "</think>\n<answer>";
        let Some(body) = s.strip_prefix("<think>") else { return false };
        let Some(body) = body.strip_suffix("</answer>") else { return false };
        body.contains(sep)
    };
    if full(response) || response.strip_suffix('\n').is_some_and(full) {
        return 1.0;
    }
    let mut r = 0.0;
    if has_pair(response, "<think>", "</think>") {
        r += 0.1;
    }
    if has_pair(response, "<answer>", "</answer>") {
        r += 0.5;
    }
    r
}

/// Answer score of a completion: 1 when its last `<answer>` is a valid solution.
pub fn answer_score(completion: &str, numbers: &[i64], target: i64) -> f32 {
    let Some(content) = answer_contents(completion).pop() else { return 0.0 };
    let Some((value, mut used)) = evaluate(content) else { return 0.0 };
    let mut given = numbers.to_vec();
    used.sort_unstable();
    given.sort_unstable();
    if used == given && value == Rat::int(target) {
        1.0
    } else {
        0.0
    }
}

/// reward = 0.1·format("<think>" + completion) + answer(completion).
pub fn reward(completion: &str, numbers: &[i64], target: i64) -> Reward {
    let format = format_score(&format!("<think>{completion}"));
    let answer = answer_score(completion, numbers, target);
    Reward { value: 0.1 * format + answer, correct: answer > 0.0 }
}

// === Instances ===

/// A Countdown instance. Its `Item::answer` is this struct as JSON.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Instance {
    pub numbers: Vec<i64>,
    pub target: i64,
}

/// Every value reachable by combining all of `nums` (each exactly once), with one expression
/// for each: exhaustive search over pairs and the six binary results a+b, a−b, b−a, a·b, a/b, b/a.
pub fn reachable(nums: &[i64]) -> BTreeMap<Rat, String> {
    fn go(items: &[(Rat, String)], out: &mut BTreeMap<Rat, String>) {
        if items.len() == 1 {
            out.entry(items[0].0).or_insert_with(|| items[0].1.clone());
            return;
        }
        for i in 0..items.len() {
            for j in i + 1..items.len() {
                let (a, ea) = &items[i];
                let (b, eb) = &items[j];
                let rest: Vec<(Rat, String)> =
                    items.iter().enumerate().filter(|&(k, _)| k != i && k != j).map(|(_, x)| x.clone()).collect();
                let candidates = [
                    (a.add(*b), format!("({ea} + {eb})")),
                    (a.sub(*b), format!("({ea} - {eb})")),
                    (b.sub(*a), format!("({eb} - {ea})")),
                    (a.mul(*b), format!("({ea} * {eb})")),
                    (a.div(*b), format!("({ea} / {eb})")),
                    (b.div(*a), format!("({eb} / {ea})")),
                ];
                for (v, e) in candidates {
                    if let Some(v) = v {
                        let mut next = rest.clone();
                        next.push((v, e));
                        go(&next, out);
                    }
                }
            }
        }
    }
    let items: Vec<(Rat, String)> = nums.iter().map(|&n| (Rat::int(n), n.to_string())).collect();
    let mut out = BTreeMap::new();
    go(&items, &mut out);
    out
}

/// An expression over `numbers` that equals `target`, if one exists.
pub fn solve(numbers: &[i64], target: i64) -> Option<String> {
    reachable(numbers).remove(&Rat::int(target))
}

/// Draws a solvable instance: 3 or 4 numbers in 1..=99, target uniform over the integers in
/// 1..=100 reachable from them.
pub fn generate_instance(rng: &mut Rng) -> Instance {
    loop {
        let count = if rng.index(2) == 0 { 3 } else { 4 };
        let numbers: Vec<i64> = (0..count).map(|_| rng.range(1, 99)).collect();
        let targets: Vec<i64> =
            reachable(&numbers).keys().filter_map(|r| r.as_int()).filter(|t| (1..=100).contains(t)).collect();
        if !targets.is_empty() {
            let target = targets[rng.index(targets.len())];
            return Instance { numbers, target };
        }
    }
}

/// The reference user prompt for an instance.
pub fn user_prompt(inst: &Instance) -> String {
    let list: Vec<String> = inst.numbers.iter().map(|n| n.to_string()).collect();
    format!(
        "Using the numbers [{}], create an equation that equals {}. You can use basic arithmetic operations (+, -, *, /) and each number can only be used once. Show your work in <think> </think> tags. And return the final answer in <answer> </answer> tags, for example <answer> (1 + 2) / 3 </answer>.",
        list.join(", "),
        inst.target
    )
}

pub fn item(inst: &Instance) -> Item {
    Item {
        prompt: Prompt::Chat { system: Some(SYSTEM.to_string()), user: user_prompt(inst) },
        answer: serde_json::to_string(inst).expect("Instance serialises"),
    }
}

pub struct Countdown {
    train: Vec<Item>,
    test: Vec<Item>,
    max_new_tokens: usize,
    minibatch: usize,
}

impl Countdown {
    /// `opts.train_size` + `opts.test_size` distinct instances from `opts.seed`; the test
    /// instances never repeat a training one.
    pub fn new(opts: &TaskOptions) -> Countdown {
        let mut rng = Rng::new(opts.seed ^ 0xc0de_c0de);
        let mut seen = std::collections::HashSet::new();
        let mut all = Vec::with_capacity(opts.train_size + opts.test_size);
        while all.len() < opts.train_size + opts.test_size {
            let inst = generate_instance(&mut rng);
            if seen.insert(inst.clone()) {
                all.push(item(&inst));
            }
        }
        let test = all.split_off(opts.train_size);
        Countdown {
            train: all,
            test,
            max_new_tokens: opts.max_new_tokens_or(MAX_NEW_TOKENS),
            minibatch: opts.minibatch,
        }
    }
}

impl Task for Countdown {
    fn name(&self) -> &str {
        "countdown"
    }
    fn max_new_tokens(&self) -> usize {
        self.max_new_tokens
    }
    fn train(&self) -> &[Item] {
        &self.train
    }
    fn test(&self) -> &[Item] {
        &self.test
    }
    fn response_prefix(&self) -> &str {
        PREFILL
    }
    fn minibatch_size(&self) -> usize {
        self.minibatch
    }
    fn rewards(&self, items: &[&Item], completions: &[String]) -> Result<Vec<Reward>> {
        check_lengths("countdown", items.len(), completions.len())?;
        items
            .iter()
            .zip(completions)
            .map(|(item, c)| {
                let inst: Instance = serde_json::from_str(&item.answer).map_err(|e| Error::Task {
                    task: "countdown".into(),
                    problem: format!("item answer `{}` is not {{\"numbers\": [..], \"target\": n}}: {e}", item.answer),
                })?;
                Ok(reward(c, &inst.numbers, inst.target))
            })
            .collect()
    }
}

/// Error unless there is one completion per item.
pub(crate) fn check_lengths(task: &str, items: usize, completions: usize) -> Result<()> {
    if items != completions {
        return Err(Error::Task { task: task.into(), problem: format!("{completions} completions for {items} items") });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evaluates_with_python_precedence() {
        let (v, lits) = evaluate("(1 + 2) / 3").unwrap();
        assert_eq!(v, Rat::int(1));
        assert_eq!(lits, vec![1, 2, 3]);
        assert_eq!(evaluate("2 + 3 * 4").unwrap().0, Rat::int(14));
        assert_eq!(evaluate("-3 + 5").unwrap().0, Rat::int(2));
        assert!(evaluate("2 ** 3").is_none());
        assert!(evaluate("6 // 2").is_none());
        assert!(evaluate("1 / 0").is_none());
        assert!(evaluate("(1 + 2").is_none());
        assert!(evaluate("99999999999999999999 + 1").is_none());
    }

    #[test]
    fn solver_finds_valid_expressions() {
        let e = solve(&[1, 2, 3, 4], 24).expect("solvable");
        assert_eq!(answer_score(&format!("<answer>{e}</answer>"), &[1, 2, 3, 4], 24), 1.0);
        assert!(solve(&[1, 1, 1], 100).is_none());
    }
}
