//! Tokenizer: byte-level BPE built from GGUF metadata, or loaded from a HF `tokenizer.json`.
//!
//! Both sources end up as one `tokenizers::Tokenizer` (HF's Rust implementation), so encoding and
//! decoding are exactly HF's. From GGUF the pieces are assembled the way llama.cpp reads them:
//!
//! | GGUF key                         | becomes                                                      |
//! |----------------------------------|--------------------------------------------------------------|
//! | `tokenizer.ggml.model` = `gpt2`  | byte-level BPE (the only model supported; SentencePiece is not) |
//! | `tokenizer.ggml.tokens`          | vocabulary, id = index                                       |
//! | `tokenizer.ggml.merges`          | merge list `"a b"`, rank = index                             |
//! | `tokenizer.ggml.token_type`      | 3 (control) → special added token; 4 (user-defined) → added token |
//! | `tokenizer.ggml.pre`             | pre-tokenizer (regex split), see [`PreTokenizerKind`]        |
//! | `tokenizer.ggml.{bos,eos,eot}_token_id`, `add_bos_token` | [`Tokenizer::bos`], [`Tokenizer::eos`], stop tokens, BOS on encode |
//!
//! Special-token markup in the text (`<|im_start|>`) is always parsed as the special token, as
//! llama.cpp does with `parse_special` and as a chat template's output needs.

pub mod chat;

pub use chat::{ChatTemplate, Message, Prompt};

use std::path::{Path, PathBuf};

use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::SplitDelimiterBehavior;

use crate::error::{Error, Result};

/// Token names that end a turn in the common chat formats; each one present in the vocabulary is
/// added to [`Tokenizer::stop_tokens`].
const END_OF_TURN_TOKENS: [&str; 3] = ["<|im_end|>", "<|eot_id|>", "<|endoftext|>"];

/// GPT-2's split (also the second stage of SmolLM's): contractions, letter runs, digit runs,
/// other-symbol runs, each optionally led by one space; trailing whitespace kept apart.
const GPT2_REGEX: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";

/// Llama 3's split as its `tokenizer.json` writes it (digits in groups of at most three).
const LLAMA3_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Qwen2's split: as Llama 3 but every digit on its own.
const QWEN2_REGEX: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// llama.cpp's fallback (`default`) regex list, applied one after the other.
const DEFAULT_REGEXES: [&str; 4] = [r"[\p{P}\$\+<=>\^~\|]+", GPT2_REGEX, r"\p{N}+", r"[0-9][0-9][0-9]"];

/// The pre-tokenizer families of `tokenizer.ggml.pre` that evotune understands, named after
/// llama.cpp's `LLAMA_VOCAB_PRE_TYPE_*` (llama-vocab.cpp) which they reproduce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PreTokenizerKind {
    /// `smollm`, `starcoder`, `refact`, `command-r`, `codeshell`, `exaone`, `minerva-7b`:
    /// every digit alone, then the GPT-2 split.
    Smollm,
    /// `gpt-2`, `phi-2`, `mpt`, `olmo`, `jais`: the GPT-2 split.
    Gpt2,
    /// `llama3`, `llama-v3`, `llama-bpe`, `falcon3`, `dbrx`, `smaug-bpe`: the Llama 3 split
    /// (whole-word vocabulary hits skip the merges, BOS added by default).
    Llama3,
    /// `qwen2`, `deepseek-r1-qwen`, `stablelm2`, `megrez`: the Qwen2 split.
    Qwen2,
    /// `default` or a missing key: llama.cpp's fallback regex list.
    Default,
}

impl PreTokenizerKind {
    /// Maps a `tokenizer.ggml.pre` value; `None` when evotune does not know it.
    pub fn from_gguf_name(name: &str) -> Option<PreTokenizerKind> {
        use PreTokenizerKind::*;
        Some(match name {
            "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone" | "minerva-7b" => Smollm,
            "gpt-2" | "gpt2" | "phi-2" | "mpt" | "olmo" | "jais" => Gpt2,
            "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "dbrx" | "smaug-bpe" => Llama3,
            "qwen2" | "deepseek-r1-qwen" | "stablelm2" | "megrez" => Qwen2,
            "default" => Default,
            _ => return None,
        })
    }

    /// The HF pre-tokenizer that splits text as llama.cpp's regex list for this kind does.
    /// (llama.cpp applies its regexes in turn, each splitting every fragment into matches and the
    /// text between them: that is a `Sequence` of `Split(.., Isolated)`.)
    pub(crate) fn pre_tokenizer(self) -> std::result::Result<PreTokenizerWrapper, String> {
        let split = |re: &str| -> std::result::Result<PreTokenizerWrapper, String> {
            Split::new(SplitPattern::Regex(re.to_string()), SplitDelimiterBehavior::Isolated, false)
                .map(PreTokenizerWrapper::Split)
                .map_err(|e| format!("regex {re:?}: {e}"))
        };
        // ByteLevel maps bytes to the printable alphabet the vocabulary is written in; with
        // `use_regex` it also applies the GPT-2 split itself.
        let byte_level = |use_regex: bool| PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, use_regex));
        Ok(match self {
            PreTokenizerKind::Smollm => PreTokenizerWrapper::Sequence(Sequence::new(vec![
                PreTokenizerWrapper::Digits(Digits::new(true)),
                byte_level(true),
            ])),
            PreTokenizerKind::Gpt2 => byte_level(true),
            PreTokenizerKind::Llama3 => {
                PreTokenizerWrapper::Sequence(Sequence::new(vec![split(LLAMA3_REGEX)?, byte_level(false)]))
            }
            PreTokenizerKind::Qwen2 => {
                PreTokenizerWrapper::Sequence(Sequence::new(vec![split(QWEN2_REGEX)?, byte_level(false)]))
            }
            PreTokenizerKind::Default => {
                let mut steps =
                    DEFAULT_REGEXES.iter().map(|re| split(re)).collect::<std::result::Result<Vec<_>, _>>()?;
                steps.push(byte_level(false));
                PreTokenizerWrapper::Sequence(Sequence::new(steps))
            }
        })
    }
}

/// A ready tokenizer: HF's implementation plus the model's special ids.
pub struct Tokenizer {
    /// Tokens that end a generated sequence (EOS, end-of-turn such as `<|im_end|>`).
    pub stop_tokens: Vec<u32>,
    pub bos: Option<u32>,
    pub eos: u32,
    /// [`Tokenizer::encode`] prepends `bos` (GGUF `tokenizer.ggml.add_bos_token`, HF
    /// `add_bos_token` or a BOS-adding post-processor).
    pub add_bos: bool,
    pub(crate) inner: tokenizers::Tokenizer,
    /// The file it came from, for error messages.
    pub(crate) source: PathBuf,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("source", &self.source)
            .field("vocab_size", &self.vocab_size())
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .field("add_bos", &self.add_bos)
            .field("stop_tokens", &self.stop_tokens)
            .finish()
    }
}

impl Tokenizer {
    /// Loads a HF `tokenizer.json`; the special ids come from `config_dir`'s
    /// `tokenizer_config.json` (`bos_token`, `eos_token`, `add_bos_token`), `generation_config.json`
    /// (`eos_token_id`, a number or a list: all become stop tokens) and `config.json`, in that order.
    pub fn from_file(tokenizer_json: &Path, config_dir: &Path) -> Result<Tokenizer> {
        let err = |problem: String| Error::Tokenizer { path: tokenizer_json.to_path_buf(), problem };
        let inner = parse_tokenizer_json(tokenizer_json)?;

        let tok_cfg = read_json_opt(&config_dir.join("tokenizer_config.json"))?;
        let gen_cfg = read_json_opt(&config_dir.join("generation_config.json"))?;
        let model_cfg = read_json_opt(&config_dir.join("config.json"))?;

        let by_name = |field: &str| -> Result<Option<u32>> {
            let Some(name) = tok_cfg.as_ref().and_then(|c| special_token_name(c.get(field)?)) else {
                return Ok(None);
            };
            inner.token_to_id(&name).map(Some).ok_or_else(|| {
                err(format!("tokenizer_config.json `{field}` is `{name}`, which is not in the vocabulary"))
            })
        };
        let ids_in = |cfg: &Option<serde_json::Value>, field: &str| -> Vec<u32> {
            match cfg.as_ref().and_then(|c| c.get(field)) {
                Some(serde_json::Value::Number(n)) => n.as_u64().map(|v| vec![v as u32]).unwrap_or_default(),
                Some(serde_json::Value::Array(a)) => a.iter().filter_map(|v| v.as_u64()).map(|v| v as u32).collect(),
                _ => Vec::new(),
            }
        };

        let bos = match by_name("bos_token")? {
            Some(id) => Some(id),
            None => ids_in(&gen_cfg, "bos_token_id").first().or(ids_in(&model_cfg, "bos_token_id").first()).copied(),
        };
        let gen_eos = ids_in(&gen_cfg, "eos_token_id");
        let eos = match by_name("eos_token")? {
            Some(id) => id,
            None => *gen_eos
                .first()
                .or(ids_in(&model_cfg, "eos_token_id").first())
                .ok_or_else(|| err(format!("no EOS token: none of tokenizer_config.json `eos_token`, generation_config.json or config.json `eos_token_id` in {}", config_dir.display())))?,
        };
        // BOS on encode: the config's word if it has one, else whatever the post-processor does.
        let add_bos = match tok_cfg.as_ref().and_then(|c| c.get("add_bos_token")).and_then(|v| v.as_bool()) {
            Some(b) => b && bos.is_some(),
            None => match (bos, inner.encode("", true)) {
                (Some(b), Ok(enc)) => enc.get_ids().first() == Some(&b),
                _ => false,
            },
        };
        let mut tok =
            Tokenizer { stop_tokens: Vec::new(), bos, eos, add_bos, inner, source: tokenizer_json.to_path_buf() };
        tok.stop_tokens = tok.collect_stop_tokens(std::iter::once(eos).chain(gen_eos));
        Ok(tok)
    }

    /// `first` (in order), then every end-of-turn token the vocabulary has, without repeats.
    pub(crate) fn collect_stop_tokens(&self, first: impl IntoIterator<Item = u32>) -> Vec<u32> {
        let mut out: Vec<u32> = Vec::new();
        let named = END_OF_TURN_TOKENS.iter().filter_map(|t| self.token_to_id(t));
        for id in first.into_iter().chain(named) {
            if !out.contains(&id) {
                out.push(id);
            }
        }
        out
    }

    /// Text → ids. Special-token markup (`<|im_start|>`) in `text` is parsed as special tokens.
    /// With [`Tokenizer::add_bos`] the BOS id is prepended unless the text already starts with it
    /// (a chat template that writes `{{ bos_token }}` does not get two).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        // `encode_fast`: the same ids without computing character offsets.
        let enc =
            self.inner.encode_fast(text, false).map_err(|e| self.err(format!("encoding {:?}: {e}", preview(text))))?;
        let ids = enc.get_ids();
        match self.bos {
            Some(bos) if self.add_bos && ids.first() != Some(&bos) => {
                let mut out = Vec::with_capacity(ids.len() + 1);
                out.push(bos);
                out.extend_from_slice(ids);
                Ok(out)
            }
            _ => Ok(ids.to_vec()),
        }
    }

    /// Ids → text (special tokens skipped when `skip_special`). Byte sequences that are not valid
    /// UTF-8 (a token cut in the middle of a character) decode to U+FFFD.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        let n = self.vocab_size();
        if let Some(&bad) = ids.iter().find(|&&id| id as usize >= n) {
            return Err(self.err(format!("decoding: id {bad} is past the vocabulary ({n} tokens)")));
        }
        self.inner.decode(ids, skip_special).map_err(|e| self.err(format!("decoding: {e}")))
    }

    /// V: number of ids (base vocabulary plus added tokens).
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The id of a token, written as in the vocabulary (`<|im_end|>`, `Ġthe`).
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The vocabulary entry of `id` (byte-level alphabet: a leading space shows as `Ġ`).
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// HF's tokenizer object, e.g. to write `tokenizer.json` with [`Tokenizer::save`].
    pub fn hf(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// Writes a HF `tokenizer.json` that reproduces this tokenizer (BOS handling is not part of it;
    /// it goes to `tokenizer_config.json`).
    pub fn save(&self, path: &Path) -> Result<()> {
        let json = self.inner.to_string(false).map_err(|e| self.err(format!("serialising: {e}")))?;
        std::fs::write(path, json).map_err(|e| Error::io(path, e))
    }

    fn err(&self, problem: String) -> Error {
        Error::Tokenizer { path: self.source.clone(), problem }
    }
}

/// Reads a HF `tokenizer.json`. The `tokenizers` crate panics on some malformed files (its
/// decoder and normalizer deserializers `expect` what they parse), so the text is first checked to
/// be JSON, and a panic that still escapes the crate becomes an error naming the file.
fn parse_tokenizer_json(path: &Path) -> Result<tokenizers::Tokenizer> {
    let err = |problem: String| Error::Tokenizer { path: path.to_path_buf(), problem };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    serde_json::from_str::<serde_json::Value>(&text).map_err(|e| err(format!("not valid JSON: {e}")))?;
    match std::panic::catch_unwind(|| text.parse::<tokenizers::Tokenizer>()) {
        Ok(parsed) => parsed.map_err(|e| err(e.to_string())),
        Err(panic) => {
            let why = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("(no message)");
            Err(err(format!("not a tokenizer the `tokenizers` library can read (it failed with: {why})")))
        }
    }
}

/// At most 40 characters of `text`, for error messages.
fn preview(text: &str) -> String {
    let mut s: String = text.chars().take(40).collect();
    if s.len() < text.len() {
        s.push('…');
    }
    s
}

/// A special token as `tokenizer_config.json` writes it: `"<s>"` or `{"content": "<s>", ..}`.
pub(crate) fn special_token_name(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Object(o) => o.get("content").and_then(|c| c.as_str()).map(str::to_string),
        _ => None,
    }
}

/// Parses a JSON file; `None` when it does not exist.
pub(crate) fn read_json_opt(path: &Path) -> Result<Option<serde_json::Value>> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| Error::Tokenizer { path: path.to_path_buf(), problem: format!("not valid JSON: {e}") }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}
