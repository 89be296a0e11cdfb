//! The tokenizer and chat template of a GGUF file, built from its metadata (`tokenizer.ggml.*`,
//! `tokenizer.chat_template`). The tokenizer layer knows no file format; this file reads the
//! GGUF keys and hands it plain tokens, merges and ids.

use std::collections::BTreeMap;
use std::path::Path;

use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::AddedToken;

use crate::error::Result;
use crate::model::gguf::{MetaReader, MetaValue};
use crate::tokenizer::{ChatTemplate, PreTokenizerKind, Tokenizer};

/// llama.cpp token types (`tokenizer.ggml.token_type`).
const TOKEN_TYPE_CONTROL: i64 = 3;
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

impl Tokenizer {
    /// Builds the tokenizer described by a GGUF file's metadata (see the module table).
    ///
    /// Errors name the key: an unsupported `tokenizer.ggml.model` (only `gpt2` byte-level BPE is
    /// built) or `tokenizer.ggml.pre`, a missing vocabulary, a merge whose halves are not tokens,
    /// a special id past the vocabulary.
    pub fn from_gguf(path: &Path, metadata: &BTreeMap<String, MetaValue>) -> Result<Tokenizer> {
        let meta = MetaReader { path, metadata };
        let model = meta.str("tokenizer.ggml.model")?;
        if model != "gpt2" {
            return Err(meta.bad(
                "tokenizer.ggml.model",
                format!(
                    "`{model}` is not supported: only `gpt2` (byte-level BPE, as in Llama 3, SmolLM2 and Qwen2) is"
                ),
            ));
        }
        let pre_name = meta.str_opt("tokenizer.ggml.pre")?.unwrap_or("default");
        let pre = PreTokenizerKind::from_gguf_name(pre_name).ok_or_else(|| {
            meta.bad(
                "tokenizer.ggml.pre",
                format!(
                    "pre-tokenizer `{pre_name}` is not supported (supported: smollm, gpt-2, llama-bpe/llama3, qwen2 \
                     and their aliases, default)"
                ),
            )
        })?;

        let tokens = meta.string_array("tokenizer.ggml.tokens")?;
        let vocab: Vocab = tokens.iter().enumerate().map(|(i, t)| (t.to_string(), i as u32)).collect();
        if vocab.len() != tokens.len() {
            return Err(meta.bad(
                "tokenizer.ggml.tokens",
                format!("{} tokens but only {} distinct ones", tokens.len(), vocab.len()),
            ));
        }
        let merges = meta
            .string_array("tokenizer.ggml.merges")?
            .into_iter()
            .enumerate()
            .map(|(i, m)| {
                m.split_once(' ').map(|(a, b)| (a.to_string(), b.to_string())).ok_or_else(|| {
                    meta.bad("tokenizer.ggml.merges", format!("merge {i} `{m}` is not two tokens separated by a space"))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .ignore_merges(pre == PreTokenizerKind::Llama3)
            .build()
            .map_err(|e| meta.bad("tokenizer.ggml.merges", e.to_string()))?;

        let mut inner = tokenizers::Tokenizer::new(bpe);
        inner.with_pre_tokenizer(Some(pre.pre_tokenizer().map_err(|e| meta.bad("tokenizer.ggml.pre", e))?));
        inner.with_decoder(Some(ByteLevel::default()));

        // Control tokens are parsed out of the text as special tokens (and skipped by
        // `decode(.., true)`); user-defined ones are parsed too but decode as text.
        if let Some(types) = meta.int_array_opt("tokenizer.ggml.token_type")? {
            if types.len() != tokens.len() {
                return Err(meta.bad(
                    "tokenizer.ggml.token_type",
                    format!("{} entries, expected one per token ({})", types.len(), tokens.len()),
                ));
            }
            let special: Vec<AddedToken> = (0..tokens.len())
                .filter(|&i| types[i] == TOKEN_TYPE_CONTROL)
                .map(|i| AddedToken::from(tokens[i], true))
                .collect();
            let user: Vec<AddedToken> = (0..tokens.len())
                .filter(|&i| types[i] == TOKEN_TYPE_USER_DEFINED)
                .map(|i| AddedToken::from(tokens[i], false))
                .collect();
            inner.add_special_tokens(special).map_err(|e| meta.bad("tokenizer.ggml.token_type", e.to_string()))?;
            inner.add_tokens(user).map_err(|e| meta.bad("tokenizer.ggml.token_type", e.to_string()))?;
        }

        let n = tokens.len() as u64;
        let id = |key: &str| -> Result<Option<u32>> {
            match meta.u64_opt(key)? {
                Some(v) if v >= n => Err(meta.bad(key, format!("id {v} is past the vocabulary ({n} tokens)"))),
                v => Ok(v.map(|v| v as u32)),
            }
        };
        let bos = id("tokenizer.ggml.bos_token_id")?;
        let eos =
            id("tokenizer.ggml.eos_token_id")?.ok_or_else(|| meta.bad("tokenizer.ggml.eos_token_id", "missing"))?;
        let eot = id("tokenizer.ggml.eot_token_id")?;
        // llama.cpp: the llama3 family adds BOS unless the file says otherwise; others do not.
        let add_bos =
            meta.bool_opt("tokenizer.ggml.add_bos_token")?.unwrap_or(pre == PreTokenizerKind::Llama3) && bos.is_some();

        let mut tok = Tokenizer { stop_tokens: Vec::new(), bos, eos, add_bos, inner, source: path.to_path_buf() };
        tok.stop_tokens = tok.collect_stop_tokens([Some(eos), eot].into_iter().flatten());
        Ok(tok)
    }
}

impl ChatTemplate {
    /// The template of a GGUF file (`tokenizer.chat_template`), with `bos_token`/`eos_token` taken
    /// from `tokenizer.ggml.tokens` at the BOS/EOS ids. Without that key: ChatML.
    pub fn from_gguf(path: &Path, metadata: &BTreeMap<String, MetaValue>) -> Result<Self> {
        let meta = MetaReader { path, metadata };
        let token = |key: &str| -> Result<String> {
            let Some(id) = meta.u64_opt(key)? else { return Ok(String::new()) };
            let tokens = meta.string_array("tokenizer.ggml.tokens")?;
            tokens
                .get(id as usize)
                .map(|t| t.to_string())
                .ok_or_else(|| meta.bad(key, format!("id {id} is past the vocabulary ({} tokens)", tokens.len())))
        };
        let bos = token("tokenizer.ggml.bos_token_id")?;
        let eos = token("tokenizer.ggml.eos_token_id")?;
        match meta.str_opt("tokenizer.chat_template")? {
            Some(src) => {
                ChatTemplate::new(src, bos, eos).map_err(|e| meta.bad("tokenizer.chat_template", e.to_string()))
            }
            None => Ok(ChatTemplate::chatml_with(bos, eos)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::chat::CHATML_TEMPLATE;

    /// A toy vocabulary: the byte-level letters and a few merges, two control tokens.
    fn toy_metadata(pre: &str) -> BTreeMap<String, MetaValue> {
        let s = |x: &str| MetaValue::String(x.to_string());
        let tokens = ["<|endoftext|>", "<|im_end|>", "a", "b", "c", "Ġ", "1", "2", "3", "ab", "Ġa", "Ġab", "abc"];
        let types = [3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1];
        let merges = ["Ġ a", "a b", "Ġa b", "ab c"];
        let mut m = BTreeMap::new();
        m.insert("tokenizer.ggml.model".into(), s("gpt2"));
        m.insert("tokenizer.ggml.pre".into(), s(pre));
        m.insert("tokenizer.ggml.tokens".into(), MetaValue::Array(tokens.iter().map(|t| s(t)).collect()));
        m.insert(
            "tokenizer.ggml.token_type".into(),
            MetaValue::Array(types.iter().map(|&t| MetaValue::I32(t)).collect()),
        );
        m.insert("tokenizer.ggml.merges".into(), MetaValue::Array(merges.iter().map(|t| s(t)).collect()));
        m.insert("tokenizer.ggml.eos_token_id".into(), MetaValue::U32(1));
        m.insert("tokenizer.ggml.bos_token_id".into(), MetaValue::U32(0));
        m
    }

    #[test]
    fn toy_bpe_merges_digits_and_specials() {
        let tok = Tokenizer::from_gguf(Path::new("toy.gguf"), &toy_metadata("smollm")).unwrap();
        assert_eq!(tok.vocab_size(), 13);
        // "abc ab" → [abc] [Ġab]; digits split one by one; markup parsed as the special token.
        assert_eq!(tok.encode("abc ab").unwrap(), vec![12, 11]);
        assert_eq!(tok.encode("123").unwrap(), vec![6, 7, 8]);
        assert_eq!(tok.encode("a<|im_end|>b").unwrap(), vec![2, 1, 3]);
        assert_eq!(tok.decode(&[2, 1, 3], false).unwrap(), "a<|im_end|>b");
        assert_eq!(tok.decode(&[2, 1, 3], true).unwrap(), "ab");
        assert_eq!(tok.decode(&[12, 11], true).unwrap(), "abc ab");
        assert_eq!(tok.stop_tokens, vec![1, 0]);
        assert!(!tok.add_bos);
        assert_eq!(tok.id_to_token(11).as_deref(), Some("Ġab"));
        assert!(tok.decode(&[13], false).is_err());
    }

    #[test]
    fn add_bos_prepends_once() {
        let mut m = toy_metadata("llama-bpe");
        m.insert("tokenizer.ggml.add_bos_token".into(), MetaValue::Bool(true));
        let tok = Tokenizer::from_gguf(Path::new("toy.gguf"), &m).unwrap();
        assert_eq!(tok.encode("ab").unwrap(), vec![0, 9]);
        assert_eq!(tok.encode("<|endoftext|>ab").unwrap(), vec![0, 9]);
    }

    #[test]
    fn unknown_pre_and_model_name_the_key() {
        let e = Tokenizer::from_gguf(Path::new("toy.gguf"), &toy_metadata("klingon")).unwrap_err().to_string();
        assert!(e.contains("tokenizer.ggml.pre") && e.contains("klingon"), "{e}");
        let mut m = toy_metadata("smollm");
        m.insert("tokenizer.ggml.model".into(), MetaValue::String("llama".into()));
        let e = Tokenizer::from_gguf(Path::new("toy.gguf"), &m).unwrap_err().to_string();
        assert!(e.contains("tokenizer.ggml.model"), "{e}");
        let mut m = toy_metadata("smollm");
        m.insert("tokenizer.ggml.eos_token_id".into(), MetaValue::U32(99));
        let e = Tokenizer::from_gguf(Path::new("toy.gguf"), &m).unwrap_err().to_string();
        assert!(e.contains("eos_token_id") && e.contains("99"), "{e}");
    }

    #[test]
    fn every_named_pre_tokenizer_builds() {
        for name in ["smollm", "gpt-2", "llama-bpe", "llama3", "qwen2", "default"] {
            let tok = Tokenizer::from_gguf(Path::new("toy.gguf"), &toy_metadata(name)).unwrap();
            assert_eq!(tok.decode(&tok.encode("ab abc").unwrap(), true).unwrap(), "ab abc", "{name}");
        }
    }

    #[test]
    fn gguf_without_template_falls_back_to_chatml_with_its_tokens() {
        let mut m = BTreeMap::new();
        let toks = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
        m.insert(
            "tokenizer.ggml.tokens".to_string(),
            MetaValue::Array(toks.iter().map(|t| MetaValue::String(t.to_string())).collect()),
        );
        m.insert("tokenizer.ggml.eos_token_id".to_string(), MetaValue::U32(2));
        let t = ChatTemplate::from_gguf(Path::new("x.gguf"), &m).unwrap();
        assert_eq!(t.source, CHATML_TEMPLATE);
        assert_eq!((t.bos_token.as_str(), t.eos_token.as_str()), ("", "<|im_end|>"));
        m.insert("tokenizer.chat_template".to_string(), MetaValue::String("{% if %}".into()));
        let e = ChatTemplate::from_gguf(Path::new("x.gguf"), &m).unwrap_err().to_string();
        assert!(e.contains("tokenizer.chat_template"), "{e}");
    }
}
