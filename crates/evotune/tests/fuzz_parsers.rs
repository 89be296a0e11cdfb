//! Fuzzing of the parsers that read user files: GGUF models, HF directories (the safetensors
//! header and data, `config.json`, `tokenizer.json`, `tokenizer_config.json`) and JSONL task and
//! prior-suite files.
//!
//! Each target starts from small valid seed files (the tiny model of `support/tiny_files.rs`, a few
//! JSONL lines) and applies 1–4 random mutations: truncation, bit flips, byte overwrites, splices of
//! the file into itself, inserted and deleted runs, long repeated runs (deep JSON nesting), and —
//! aware of the format — overwrites of the length, count, dimension, offset and type fields of the
//! GGUF and safetensors headers and of every number and string of the JSON files with edge values
//! (0, 2³²−1, 2⁴⁰, u64::MAX, 1e309, …), so that a field can claim terabytes. The mutated input goes
//! through the whole loader; when it loads, the model also renders, tokenizes, generates and
//! scores a little.
//!
//! What must hold, for every input: no panic (proptest catches and shrinks it); no allocation
//! larger than [`MAX_ALLOCATION`] and no more than [`MAX_LIVE`] bytes live (the global allocator
//! below refuses, which aborts the test binary with the size); no case runs longer than
//! [`MAX_CASE`] (a watchdog aborts with the target's name); a failed GGUF load names the file.
//!
//! Cases per target: a few hundred to a few thousand (the defaults below, ~20 s in all in release
//! mode on 2 cores). For a longer run set `EVOTUNE_FUZZ_CASES` (cases per target) and, to explore
//! other inputs than the fixed default seed, `EVOTUNE_FUZZ_SEED` (any u64):
//!
//! ```text
//! EVOTUNE_FUZZ_CASES=200000 EVOTUNE_FUZZ_SEED=$RANDOM cargo test --release --test fuzz_parsers
//! ```
//!
//! A failing input is written to `target/fuzz-failures/<target>-<hash>` (after shrinking), and the
//! input of the case in progress to `target/fuzz-failures/<target>-current` (what to look at when
//! the binary aborts on a refused allocation or a hang); inputs
//! that once found bugs live in `tests/fuzz_corpus/<target>/` (the directory names the target;
//! binary files end in `.bin`, as the repository ignores `*.gguf` and `*.safetensors`) and are
//! replayed by [`corpus_replays_cleanly`] on every run.

#[path = "support/tiny_files.rs"]
mod tiny_files;

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use evotune::model::generate::{generate, GenerateOptions, Sampling};
use evotune::model::gguf_write::ExportType;
use evotune::model::loader::load_path;
use evotune::model::score::score;
use evotune::tasks::jsonl::JsonlTask;
use evotune::tasks::{jsonl, multiple_choice, TaskOptions};
use evotune::tokenizer::{ChatTemplate, Prompt, Tokenizer};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, RngAlgorithm, TestError, TestRng, TestRunner};

// === Guards: bounded allocation, bounded time ===

/// The largest single allocation any parser may make for these kilobyte-sized inputs.
const MAX_ALLOCATION: usize = 256 << 20;
/// The most heap the whole test binary may hold at once.
const MAX_LIVE: usize = 2 << 30;
/// The longest one case may run (generous: the machine may be shared).
const MAX_CASE: Duration = Duration::from_secs(30);

struct Bounded;

static LIVE: AtomicUsize = AtomicUsize::new(0);

impl Bounded {
    fn refuse(size: usize) {
        // No allocation here: format into a stack buffer and write it raw.
        let mut buf = [0u8; 160];
        let mut w = &mut buf[..];
        let _ =
            writeln!(w, "fuzz_parsers: refused an allocation of {size} bytes ({} live)", LIVE.load(Ordering::Relaxed));
        let n = 160 - w.len();
        let _ = std::io::stderr().write_all(&buf[..n]);
    }

    fn admit(size: usize) -> bool {
        if size > MAX_ALLOCATION || LIVE.fetch_add(size, Ordering::Relaxed) + size > MAX_LIVE {
            if size <= MAX_ALLOCATION {
                LIVE.fetch_sub(size, Ordering::Relaxed);
            }
            Self::refuse(size);
            return false;
        }
        true
    }
}

// SAFETY: every call is forwarded to `System`; refusing returns null, which callers handle.
unsafe impl GlobalAlloc for Bounded {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !Self::admit(layout.size()) {
            return std::ptr::null_mut();
        }
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !Self::admit(layout.size()) {
            return std::ptr::null_mut();
        }
        System.alloc_zeroed(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() && !Self::admit(new_size - layout.size()) {
            return std::ptr::null_mut();
        }
        let p = System.realloc(ptr, layout, new_size);
        if p.is_null() {
            if new_size > layout.size() {
                LIVE.fetch_sub(new_size - layout.size(), Ordering::Relaxed);
            }
        } else if new_size < layout.size() {
            LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Bounded = Bounded;

/// Aborts the process when a case of `target` runs past [`MAX_CASE`].
struct Watchdog {
    started_ms: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
    epoch: Instant,
}

impl Watchdog {
    fn new(target: &'static str) -> Watchdog {
        let (started_ms, done, epoch) =
            (Arc::new(AtomicU64::new(u64::MAX)), Arc::new(AtomicBool::new(false)), Instant::now());
        let (s, d) = (started_ms.clone(), done.clone());
        std::thread::spawn(move || {
            while !d.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                let at = s.load(Ordering::Relaxed);
                if at != u64::MAX && epoch.elapsed().as_millis() as u64 > at + MAX_CASE.as_millis() as u64 {
                    eprintln!(
                        "fuzz_parsers: a `{target}` case ran longer than {MAX_CASE:?} (hang); its input is \
                         target/fuzz-failures/{target}-current"
                    );
                    std::process::abort();
                }
            }
        });
        Watchdog { started_ms, done, epoch }
    }
    fn start(&self) {
        self.started_ms.store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
    fn stop(&self) {
        self.started_ms.store(u64::MAX, Ordering::Relaxed);
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
    }
}

// === Seeds and their fields ===

#[derive(Clone, Copy, Debug, PartialEq)]
enum FieldKind {
    U32,
    U64,
    /// A JSON number, string or literal, replaced by text.
    Text,
}

#[derive(Clone, Copy, Debug)]
struct Field {
    at: usize,
    len: usize,
    kind: FieldKind,
}

struct Seed {
    bytes: Vec<u8>,
    fields: Vec<Field>,
}

/// The fields of a GGUF file's header, metadata and tensor index (a walker written from the spec).
fn gguf_fields(b: &[u8]) -> Vec<Field> {
    let mut f = Vec::new();
    let mut pos = 4;
    let u32_at = |p: usize| u32::from_le_bytes(b[p..p + 4].try_into().unwrap());
    let u64_at = |p: usize| u64::from_le_bytes(b[p..p + 8].try_into().unwrap()) as usize;
    let field = |f: &mut Vec<Field>, at: usize, kind: FieldKind| {
        f.push(Field { at, len: if kind == FieldKind::U32 { 4 } else { 8 }, kind });
    };
    field(&mut f, pos, FieldKind::U32); // version
    let n_tensors = u64_at(pos + 4);
    let n_kv = u64_at(pos + 12);
    field(&mut f, pos + 4, FieldKind::U64);
    field(&mut f, pos + 12, FieldKind::U64);
    pos += 20;
    fn value(b: &[u8], f: &mut Vec<Field>, pos: &mut usize, ty: u32) {
        let u32_at = |p: usize| u32::from_le_bytes(b[p..p + 4].try_into().unwrap());
        let u64_at = |p: usize| u64::from_le_bytes(b[p..p + 8].try_into().unwrap()) as usize;
        match ty {
            0 | 1 | 7 => *pos += 1,
            2 | 3 => *pos += 2,
            4..=6 => {
                f.push(Field { at: *pos, len: 4, kind: FieldKind::U32 });
                *pos += 4
            }
            10..=12 => {
                f.push(Field { at: *pos, len: 8, kind: FieldKind::U64 });
                *pos += 8
            }
            8 => {
                f.push(Field { at: *pos, len: 8, kind: FieldKind::U64 });
                *pos += 8 + u64_at(*pos);
            }
            9 => {
                let elem = u32_at(*pos);
                f.push(Field { at: *pos, len: 4, kind: FieldKind::U32 });
                f.push(Field { at: *pos + 4, len: 8, kind: FieldKind::U64 });
                let n = u64_at(*pos + 4);
                *pos += 12;
                for _ in 0..n {
                    value(b, f, pos, elem);
                }
            }
            _ => panic!("seed has unknown type {ty}"),
        }
    }
    for _ in 0..n_kv {
        field(&mut f, pos, FieldKind::U64);
        pos += 8 + u64_at(pos);
        let ty = u32_at(pos);
        field(&mut f, pos, FieldKind::U32);
        pos += 4;
        value(b, &mut f, &mut pos, ty);
    }
    for _ in 0..n_tensors {
        field(&mut f, pos, FieldKind::U64);
        pos += 8 + u64_at(pos);
        let n_dims = u32_at(pos) as usize;
        field(&mut f, pos, FieldKind::U32);
        pos += 4;
        for _ in 0..n_dims {
            field(&mut f, pos, FieldKind::U64);
            pos += 8;
        }
        field(&mut f, pos, FieldKind::U32); // type
        field(&mut f, pos + 4, FieldKind::U64); // offset
        pos += 12;
    }
    f
}

/// The numbers, strings and literals of JSON text `t` (offset by `base`), found by a small lexer.
fn json_fields(t: &[u8], base: usize) -> Vec<Field> {
    let mut f = Vec::new();
    let mut i = 0;
    while i < t.len() {
        let start = i;
        match t[i] {
            b'"' => {
                i += 1;
                while i < t.len() && t[i] != b'"' {
                    i += if t[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                while i < t.len() && matches!(t[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') {
                    i += 1;
                }
            }
            b't' | b'f' | b'n' => {
                while i < t.len() && t[i].is_ascii_alphabetic() {
                    i += 1;
                }
            }
            _ => {
                i += 1;
                continue;
            }
        }
        f.push(Field { at: base + start, len: i.min(t.len()) - start, kind: FieldKind::Text });
    }
    f
}

/// A safetensors file's fields: the header length, then the JSON header's tokens.
fn safetensors_fields(b: &[u8]) -> Vec<Field> {
    let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
    let mut f = vec![Field { at: 0, len: 8, kind: FieldKind::U64 }];
    f.extend(json_fields(&b[8..8 + n], 8));
    f
}

// === Mutations ===

const U64S: [u64; 16] = [
    0,
    1,
    2,
    7,
    0xFF,
    0xFFFF,
    0x7FFF_FFFF,
    0xFFFF_FFFF,
    1 << 32,
    1 << 40,
    1 << 48,
    1 << 62,
    i64::MAX as u64,
    u64::MAX - 7,
    u64::MAX - 1,
    u64::MAX,
];
const U32S: [u32; 16] = [0, 1, 2, 3, 4, 5, 8, 9, 12, 13, 14, 30, 31, 0x7FFF_FFFF, 0xFFFF_FFFE, 0xFFFF_FFFF];
const TEXTS: [&str; 28] = [
    "0",
    "-1",
    "1",
    "2",
    "3",
    "7",
    "1.5",
    "1e309",
    "-1e309",
    "1e-320",
    "4294967295",
    "4294967296",
    "1099511627776",
    "9007199254740993",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999999",
    "null",
    "true",
    "[]",
    "{}",
    "\"\"",
    "\"F64\"",
    "\"I8\"",
    "\"\\ud800\"",
    "\"<|im_end|>\"",
    "[1,2,3]",
    "[18446744073709551615,18446744073709551615]",
];

#[derive(Clone, Debug)]
enum Value {
    /// One of the edge values of the field's kind (by index).
    Edge(Index),
    Random(u64),
}

#[derive(Clone, Debug)]
enum Mutation {
    Truncate(Index),
    FlipBit(Index, u8),
    SetByte(Index, u8),
    /// Field (by index) ← an edge value or a random one.
    Field(Index, Value),
    Overwrite(Index, Vec<u8>),
    Insert(Index, Vec<u8>),
    Delete(Index, u16),
    /// Copy `len` bytes from one place over another (or inserted there).
    Splice {
        from: Index,
        to: Index,
        len: u16,
        insert: bool,
    },
    /// Insert a short unit repeated many times (`[[[[…`, long strings, zero runs).
    Repeat(Index, Vec<u8>, u16),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let bytes = || prop::collection::vec(any::<u8>(), 1..16);
    prop_oneof![
        1 => any::<Index>().prop_map(Mutation::Truncate),
        3 => (any::<Index>(), 0u8..8).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        2 => (any::<Index>(), any::<u8>()).prop_map(|(i, v)| Mutation::SetByte(i, v)),
        5 => (any::<Index>(), any::<Index>()).prop_map(|(f, v)| Mutation::Field(f, Value::Edge(v))),
        2 => (any::<Index>(), any::<u64>()).prop_map(|(f, v)| Mutation::Field(f, Value::Random(v))),
        1 => (any::<Index>(), bytes()).prop_map(|(i, b)| Mutation::Overwrite(i, b)),
        1 => (any::<Index>(), bytes()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        1 => (any::<Index>(), 1u16..64).prop_map(|(i, n)| Mutation::Delete(i, n)),
        1 => (any::<Index>(), any::<Index>(), 1u16..256, any::<bool>())
            .prop_map(|(from, to, len, insert)| Mutation::Splice { from, to, len, insert }),
        1 => (any::<Index>(), prop::collection::vec(any::<u8>(), 1..4), 1u16..3000)
            .prop_map(|(i, u, n)| Mutation::Repeat(i, u, n)),
    ]
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    prop::collection::vec(mutation(), 1..=4)
}

fn apply(seed: &Seed, muts: &[Mutation]) -> Vec<u8> {
    let mut b = seed.bytes.clone();
    let pos = |b: &Vec<u8>, i: &Index| if b.is_empty() { 0 } else { i.index(b.len()) };
    for m in muts {
        match m {
            Mutation::Truncate(i) => {
                let n = pos(&b, i);
                b.truncate(n)
            }
            Mutation::FlipBit(i, bit) if !b.is_empty() => {
                let p = pos(&b, i);
                b[p] ^= 1 << bit
            }
            Mutation::SetByte(i, v) if !b.is_empty() => {
                let p = pos(&b, i);
                b[p] = *v
            }
            Mutation::Field(f, value) if !seed.fields.is_empty() => {
                let field = seed.fields[f.index(seed.fields.len())];
                let new: Vec<u8> = match (field.kind, value) {
                    (FieldKind::U32, Value::Edge(v)) => U32S[v.index(U32S.len())].to_le_bytes().to_vec(),
                    (FieldKind::U32, Value::Random(r)) => (*r as u32).to_le_bytes().to_vec(),
                    (FieldKind::U64, Value::Edge(v)) => U64S[v.index(U64S.len())].to_le_bytes().to_vec(),
                    (FieldKind::U64, Value::Random(r)) => r.to_le_bytes().to_vec(),
                    (FieldKind::Text, Value::Edge(v)) => TEXTS[v.index(TEXTS.len())].as_bytes().to_vec(),
                    (FieldKind::Text, Value::Random(r)) => (r % 100_000).to_string().into_bytes(),
                };
                if field.at + field.len <= b.len() {
                    if field.kind == FieldKind::Text {
                        b.splice(field.at..field.at + field.len, new);
                    } else {
                        b[field.at..field.at + field.len].copy_from_slice(&new);
                    }
                }
            }
            Mutation::Overwrite(i, bytes) if !b.is_empty() => {
                let p = pos(&b, i);
                let n = bytes.len().min(b.len() - p);
                b[p..p + n].copy_from_slice(&bytes[..n]);
            }
            Mutation::Insert(i, bytes) => {
                let p = pos(&b, i);
                b.splice(p..p, bytes.iter().copied());
            }
            Mutation::Delete(i, n) if !b.is_empty() => {
                let p = pos(&b, i);
                let e = (p + *n as usize).min(b.len());
                b.drain(p..e);
            }
            Mutation::Splice { from, to, len, insert } if !b.is_empty() => {
                let (f, t) = (pos(&b, from), pos(&b, to));
                let chunk: Vec<u8> = b[f..(f + *len as usize).min(b.len())].to_vec();
                if *insert {
                    b.splice(t..t, chunk);
                } else {
                    let n = chunk.len().min(b.len() - t);
                    b[t..t + n].copy_from_slice(&chunk[..n]);
                }
            }
            Mutation::Repeat(i, unit, n) => {
                let p = pos(&b, i);
                let run: Vec<u8> = unit.iter().copied().cycle().take(unit.len() * *n as usize).collect();
                b.splice(p..p, run);
            }
            _ => {}
        }
    }
    b
}

// === The runner ===

fn cases(default: u32) -> u32 {
    std::env::var("EVOTUNE_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn rng(target: &str) -> TestRng {
    let seed: u64 = std::env::var("EVOTUNE_FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0x5EED);
    // One stream per target: mix its name into the seed.
    let mut key = [0u8; 32];
    let h = target.bytes().fold(seed ^ 0xCBF2_9CE4_8422_2325, |h, c| (h ^ c as u64).wrapping_mul(0x100_0000_01B3));
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&h.to_le_bytes());
    TestRng::from_seed(RngAlgorithm::ChaCha, &key)
}

/// `target/fuzz-failures/` of the workspace, created.
fn failures_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/fuzz-failures");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `check` on `cases` mutants of `seeds` (the seed is picked by the strategy too). On failure
/// the shrunk input goes to `target/fuzz-failures/` and the test fails with its path.
fn fuzz(target: &'static str, seeds: &[Seed], n: u32, check: impl Fn(&[u8]) -> String) {
    let config = Config { cases: n, failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new_with_rng(config, rng(target));
    let watchdog = Watchdog::new(target);
    // The case in progress, for when the process aborts (allocation refused, hang).
    let current = failures_dir().join(format!("{target}-current"));
    let outcomes = std::sync::Mutex::new(std::collections::BTreeMap::<String, u32>::new());
    let t = Instant::now();
    let result = runner.run(&(any::<Index>(), mutations()), |(which, muts)| {
        let seed = &seeds[which.index(seeds.len())];
        let input = apply(seed, &muts);
        std::fs::write(&current, &input).unwrap();
        watchdog.start();
        let outcome = check(&input);
        watchdog.stop();
        *outcomes.lock().unwrap().entry(outcome).or_default() += 1;
        Ok(())
    });
    watchdog.stop();
    eprintln!("fuzz {target}: {n} cases in {:.1} s", t.elapsed().as_secs_f64());
    if std::env::var_os("EVOTUNE_FUZZ_STATS").is_some() {
        let mut o: Vec<(String, u32)> = outcomes.into_inner().unwrap().into_iter().collect();
        o.sort_by_key(|e| std::cmp::Reverse(e.1));
        for (what, count) in o {
            eprintln!("fuzz {target}: {count:6} × {what}");
        }
    }
    match result {
        Ok(()) => {}
        Err(TestError::Fail(reason, (which, muts))) => {
            let input = apply(&seeds[which.index(seeds.len())], &muts);
            let dir = failures_dir();
            let h = input.iter().fold(0xCBF2_9CE4_8422_2325u64, |h, &c| (h ^ c as u64).wrapping_mul(0x100_0000_01B3));
            let path = dir.join(format!("{target}-{h:016x}"));
            std::fs::write(&path, &input).unwrap();
            panic!(
                "fuzz {target}: {reason}; input ({} bytes) saved to {}; mutations {muts:?}",
                input.len(),
                path.display()
            );
        }
        Err(e) => panic!("fuzz {target}: {e}"),
    }
}

// === Targets ===

/// A few steps of what the CLI does with a loaded model: render, tokenize, generate, score. Any
/// of them may fail (a mutated model may be nonsense); none may panic.
fn exercise(model: &evotune::model::Model, params: &evotune::model::Params) -> String {
    let text = match model.chat.render_prompt(&Prompt::Chat { system: None, user: "ab abc 12".into() }) {
        Ok(t) => t,
        Err(e) => return format!("loaded, render: {}", kind(&e)),
    };
    let ids = match model.tokenizer.encode(&text) {
        Ok(ids) => ids,
        Err(e) => return format!("loaded, encode: {}", kind(&e)),
    };
    let _ = model.tokenizer.decode(&ids, true);
    if ids.is_empty() {
        return "loaded, no tokens".into();
    }
    let opts = GenerateOptions {
        max_new_tokens: 2,
        sampling: Sampling::Greedy,
        stop_tokens: model.tokenizer.stop_tokens.clone(),
    };
    let generated = generate(&model.llama, params, std::slice::from_ref(&ids), &opts);
    let scored = score(&model.llama, params, &[(ids, vec![3, 4])]);
    format!("loaded, generate: {}, score: {}", outcome(&generated), outcome(&scored))
}

/// The variant of an error (with the key or field for metadata and task-line errors).
fn kind(e: &evotune::Error) -> String {
    use evotune::Error as E;
    let debug = format!("{e:?}");
    let variant = debug.split([' ', '{', '(']).next().unwrap_or("").to_string();
    match e {
        E::BadMetadata { key, .. } => format!("{variant} {key}"),
        E::BadTaskLine { field, .. } => format!("{variant} {field}"),
        _ => variant,
    }
}

fn outcome<T>(r: &evotune::Result<T>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => kind(e),
    }
}

/// Loads a mutated GGUF from `path`: an error must name the file.
fn gguf_check(path: &Path, bytes: &[u8]) -> String {
    std::fs::write(path, bytes).unwrap();
    match load_path(path) {
        Ok((model, params)) => exercise(&model, &params),
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains(&path.display().to_string()), "a GGUF load error does not name the file: {msg}");
            kind(&e)
        }
    }
}

/// Writes `bytes` as file `name` of the HF directory `dir`, then loads the directory.
fn hf_check(dir: &Path, name: &str, bytes: &[u8]) -> String {
    std::fs::write(dir.join(name), bytes).unwrap();
    match load_path(dir) {
        Ok((model, params)) => exercise(&model, &params),
        Err(e) => kind(&e),
    }
}

/// The tokenizer files of a HF directory alone.
fn tokenizer_check(dir: &Path, name: &str, bytes: &[u8]) -> String {
    std::fs::write(dir.join(name), bytes).unwrap();
    let tok = match Tokenizer::from_file(&dir.join("tokenizer.json"), dir) {
        Ok(tok) => match tok.encode("ab abc<|im_end|> us 12") {
            Ok(ids) => format!("tokenizer ok, decode {}", outcome(&tok.decode(&ids, false))),
            Err(e) => format!("tokenizer ok, encode {}", kind(&e)),
        },
        Err(e) => format!("tokenizer {}", kind(&e)),
    };
    let chat = match ChatTemplate::from_hf_dir(dir) {
        Ok(chat) => {
            let r = chat.render_prompt(&Prompt::Chat { system: Some("s".into()), user: "u".into() });
            format!("template ok, render {}", outcome(&r))
        }
        Err(e) => format!("template {}", kind(&e)),
    };
    format!("{tok}; {chat}")
}

const GENERATION_JSONL: &str = r#"{"prompt": "What is the capital of France?", "answer": "Paris"}
{"prompt": "2 + 2 = ?", "answer": 4, "system": "Answer with a number."}

{"prompt": "Name a colour.", "answer": "red", "extra": [1, {"x": null}]}
"#;
const CHOICE_JSONL: &str = r#"{"question": "Which is a fruit?", "choices": ["apple", "stone", "iron"], "answer": 0}
{"question": "2 + 3?", "choices": ["4", "5", 6], "answer": "B", "system": "Be brief."}
"#;

fn jsonl_check(bytes: &[u8]) -> String {
    let path = Path::new("fuzz.jsonl");
    let text = String::from_utf8_lossy(bytes);
    let generation = outcome(&jsonl::parse_items(path, &text));
    let _ = JsonlTask::from_text("fuzz", path, &text, &TaskOptions::default());
    let choice = multiple_choice::parse_items(path, &text);
    if let Ok(items) = &choice {
        for it in items {
            let _ = it.generation_prompt();
            let _ = multiple_choice::parse_choice(&text, &it.choices);
        }
    }
    // The reply parser sees model output: any text.
    let choices: Vec<String> = ["apple", "İstanbul", "ß", "5"].iter().map(|s| s.to_string()).collect();
    let _ = multiple_choice::parse_choice(&text, &choices);
    format!("generation items {generation}; choice items {}", outcome(&choice))
}

fn gguf_seeds() -> Vec<Seed> {
    [ExportType::Q8_0, ExportType::F16]
        .into_iter()
        .map(|t| {
            let bytes = tiny_files::tiny_gguf_bytes(t);
            Seed { fields: gguf_fields(&bytes), bytes }
        })
        .collect()
}

fn text_seed(text: &str) -> Seed {
    Seed { bytes: text.as_bytes().to_vec(), fields: json_fields(text.as_bytes(), 0) }
}

#[test]
fn fuzz_gguf() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fuzz.gguf");
    fuzz("gguf", &gguf_seeds(), cases(3000), |b| gguf_check(&path, b));
}

#[test]
fn fuzz_safetensors() {
    let dir = tempfile::tempdir().unwrap();
    let hf = tiny_files::write_tiny_hf_dir(&dir.path().join("hf"));
    let bytes = std::fs::read(hf.join("model.safetensors")).unwrap();
    let seed = Seed { fields: safetensors_fields(&bytes), bytes };
    fuzz("safetensors", &[seed], cases(1500), |b| hf_check(&hf, "model.safetensors", b));
}

#[test]
fn fuzz_config_json() {
    let dir = tempfile::tempdir().unwrap();
    let hf = tiny_files::write_tiny_hf_dir(&dir.path().join("hf"));
    let seed = text_seed(&std::fs::read_to_string(hf.join("config.json")).unwrap());
    fuzz("config", &[seed], cases(1500), |b| hf_check(&hf, "config.json", b));
}

#[test]
fn fuzz_tokenizer_files() {
    let dir = tempfile::tempdir().unwrap();
    let hf = tiny_files::write_tiny_hf_dir(&dir.path().join("hf"));
    let tok = text_seed(&std::fs::read_to_string(hf.join("tokenizer.json")).unwrap());
    let cfg = text_seed(&std::fs::read_to_string(hf.join("tokenizer_config.json")).unwrap());
    fuzz("tokenizer", &[tok], cases(1500), |b| tokenizer_check(&hf, "tokenizer.json", b));
    tiny_files::write_tiny_hf_dir(&hf);
    fuzz("tokenizer_config", &[cfg], cases(1000), |b| tokenizer_check(&hf, "tokenizer_config.json", b));
}

#[test]
fn fuzz_jsonl() {
    fuzz("jsonl", &[text_seed(GENERATION_JSONL), text_seed(CHOICE_JSONL)], cases(4000), jsonl_check);
}

/// The committed inputs that once found bugs, replayed through their target.
#[test]
fn corpus_replays_cleanly() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_corpus");
    let dir = tempfile::tempdir().unwrap();
    let hf = tiny_files::write_tiny_hf_dir(&dir.path().join("hf"));
    let gguf = dir.path().join("corpus.gguf");
    let watchdog = Watchdog::new("corpus");
    let mut n = 0;
    let mut targets: Vec<PathBuf> = std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).collect();
    targets.sort();
    for target in targets {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&target).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        for file in files {
            let bytes = std::fs::read(&file).unwrap();
            let name = target.file_name().unwrap().to_str().unwrap();
            eprint!("replay {name}/{}", file.file_name().unwrap().to_string_lossy());
            watchdog.start();
            let outcome = match name {
                "gguf" => gguf_check(&gguf, &bytes),
                "safetensors" => hf_check(&hf, "model.safetensors", &bytes),
                "config" => hf_check(&hf, "config.json", &bytes),
                "tokenizer" => tokenizer_check(&hf, "tokenizer.json", &bytes),
                "tokenizer_config" => tokenizer_check(&hf, "tokenizer_config.json", &bytes),
                "jsonl" => jsonl_check(&bytes),
                other => panic!("unknown corpus target {other}"),
            };
            watchdog.stop();
            eprintln!("  → {outcome}");
            // Each replay leaves the directory as it found it.
            tiny_files::write_tiny_hf_dir(&hf);
            n += 1;
        }
    }
    assert!(n > 0, "the corpus is empty");
}

/// Writes the seed files to `target/fuzz-seeds/` (a starting point for new corpus entries):
/// `cargo test --release --test fuzz_parsers -- --ignored write_seeds`.
#[test]
#[ignore = "writes files for people crafting corpus entries"]
fn write_seeds() {
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/fuzz-seeds");
    std::fs::create_dir_all(&out).unwrap();
    for (i, s) in gguf_seeds().iter().enumerate() {
        std::fs::write(out.join(format!("tiny-{i}.gguf")), &s.bytes).unwrap();
    }
    tiny_files::write_tiny_hf_dir(&out.join("hf"));
    std::fs::write(out.join("generation.jsonl"), GENERATION_JSONL).unwrap();
    std::fs::write(out.join("choices.jsonl"), CHOICE_JSONL).unwrap();
}
