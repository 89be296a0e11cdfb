//! The tokenizer and chat template of a GGUF file, built from its metadata (`tokenizer.ggml.*`,
//! `tokenizer.chat_template`). The tokenizer layer knows no file format; this file reads the
//! GGUF keys and hands it plain tokens, merges and ids.

use std::collections::BTreeMap;
use std::path::Path;

use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::normalizers::{Prepend, Replace, Sequence as NormalizerSequence};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, NormalizerWrapper};

use crate::error::Result;
use crate::model::gguf::{MetaReader, MetaValue};
use crate::tokenizer::{ChatTemplate, PreTokenizerKind, Tokenizer};

/// llama.cpp token types (`tokenizer.ggml.token_type`).
const TOKEN_TYPE_NORMAL: i64 = 1;
const TOKEN_TYPE_CONTROL: i64 = 3;
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

impl Tokenizer {
    /// Builds the tokenizer described by a GGUF file's metadata (see the module table).
    ///
    /// `tokenizer.ggml.model` `gpt2` is byte-level BPE ([`byte_level_bpe`]), `llama` SentencePiece
    /// BPE ([`sentencepiece_bpe`]). Errors name the key: another model or an unknown
    /// `tokenizer.ggml.pre`, a missing vocabulary or scores, a merge whose halves are not tokens,
    /// a special id past the vocabulary.
    pub fn from_gguf(path: &Path, metadata: &BTreeMap<String, MetaValue>) -> Result<Tokenizer> {
        let meta = MetaReader { path, metadata };
        let model = meta.str("tokenizer.ggml.model")?;
        let tokens = meta.string_array("tokenizer.ggml.tokens")?;
        let vocab: Vocab = tokens.iter().enumerate().map(|(i, t)| (t.to_string(), i as u32)).collect();
        if vocab.len() != tokens.len() {
            return Err(meta.bad(
                "tokenizer.ggml.tokens",
                format!("{} tokens but only {} distinct ones", tokens.len(), vocab.len()),
            ));
        }
        let types = meta.int_array_opt("tokenizer.ggml.token_type")?;
        if let Some(types) = &types {
            if types.len() != tokens.len() {
                return Err(meta.bad(
                    "tokenizer.ggml.token_type",
                    format!("{} entries, expected one per token ({})", types.len(), tokens.len()),
                ));
            }
        }
        // llama.cpp adds BOS by default for SentencePiece and the llama3 family, not for others.
        let (mut inner, add_bos_default) = match model {
            "gpt2" => {
                let (inner, pre) = byte_level_bpe(&meta, vocab)?;
                (inner, pre == PreTokenizerKind::Llama3)
            }
            "llama" => (sentencepiece_bpe(&meta, &tokens, vocab, types.as_deref())?, true),
            _ => {
                return Err(meta.bad(
                    "tokenizer.ggml.model",
                    format!(
                        "`{model}` is not supported: `gpt2` (byte-level BPE: Llama 3, SmolLM2, Qwen) and `llama` \
                         (SentencePiece BPE: Llama 2, Mistral, Gemma) are"
                    ),
                ))
            }
        };

        // Control tokens are parsed out of the text as special tokens (and skipped by
        // `decode(.., true)`); user-defined ones are parsed too but decode as text.
        if let Some(types) = &types {
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
        let add_bos = meta.bool_opt("tokenizer.ggml.add_bos_token")?.unwrap_or(add_bos_default) && bos.is_some();

        let mut tok = Tokenizer { stop_tokens: Vec::new(), bos, eos, add_bos, inner, source: path.to_path_buf() };
        tok.stop_tokens = tok.collect_stop_tokens([Some(eos), eot].into_iter().flatten());
        Ok(tok)
    }
}

impl Tokenizer {
    /// The `tokenizer.*` metadata llama.cpp needs to run this tokenizer from a GGUF (the reverse
    /// of [`Tokenizer::from_gguf`]), with `chat`'s template: for a byte-level BPE whose split is
    /// one of the [`PreTokenizerKind`]s. `None` (the GGUF then carries no tokenizer) for any other:
    /// llama.cpp names splits, it cannot take a regex from the file.
    pub fn gguf_metadata(&self, chat: &ChatTemplate) -> Option<BTreeMap<String, MetaValue>> {
        let json: serde_json::Value = serde_json::from_str(&self.inner.to_string(false).ok()?).ok()?;
        let model = &json["model"];
        if model["type"] != "BPE" || model["byte_fallback"] == true {
            return None;
        }
        let signature = pre_signature(&json["pre_tokenizer"]);
        let pre = [
            (PreTokenizerKind::Smollm, "smollm"),
            (PreTokenizerKind::Gpt2, "gpt-2"),
            (PreTokenizerKind::Llama3, "llama-bpe"),
            (PreTokenizerKind::Qwen2, "qwen2"),
            (PreTokenizerKind::Default, "default"),
        ]
        .into_iter()
        .find(|(kind, _)| {
            kind.pre_tokenizer()
                .ok()
                .and_then(|p| serde_json::to_value(p).ok())
                .is_some_and(|p| pre_signature(&p) == signature)
        })?
        .1;
        // Tokens by id: the model's vocabulary and the added tokens (control when special).
        let n = self.inner.get_vocab_size(true);
        let mut tokens = vec![None; n];
        let mut types = vec![1i32; n];
        for (t, id) in model["vocab"].as_object()? {
            *tokens.get_mut(id.as_u64()? as usize)? = Some(t.clone());
        }
        for added in json["added_tokens"].as_array()? {
            let id = added["id"].as_u64()? as usize;
            *tokens.get_mut(id)? = Some(added["content"].as_str()?.to_string());
            types[id] =
                if added["special"] == true { TOKEN_TYPE_CONTROL as i32 } else { TOKEN_TYPE_USER_DEFINED as i32 };
        }
        let tokens: Vec<String> = tokens.into_iter().collect::<Option<_>>()?;
        let merges: Vec<String> = model["merges"]
            .as_array()?
            .iter()
            .map(|m| match m {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Array(pair) => {
                    Some(format!("{} {}", pair.first()?.as_str()?, pair.get(1)?.as_str()?))
                }
                _ => None,
            })
            .collect::<Option<_>>()?;
        let strings = |v: Vec<String>| MetaValue::Array(v.into_iter().map(MetaValue::String).collect());
        let mut m = BTreeMap::new();
        m.insert("tokenizer.ggml.model".into(), MetaValue::String("gpt2".into()));
        m.insert("tokenizer.ggml.pre".into(), MetaValue::String(pre.into()));
        m.insert("tokenizer.ggml.tokens".into(), strings(tokens));
        m.insert("tokenizer.ggml.token_type".into(), MetaValue::Array(types.into_iter().map(MetaValue::I32).collect()));
        m.insert("tokenizer.ggml.merges".into(), strings(merges));
        m.insert("tokenizer.ggml.eos_token_id".into(), MetaValue::U32(self.eos));
        if let Some(b) = self.bos {
            m.insert("tokenizer.ggml.bos_token_id".into(), MetaValue::U32(b));
        }
        m.insert("tokenizer.ggml.add_bos_token".into(), MetaValue::Bool(self.add_bos));
        m.insert("tokenizer.chat_template".into(), MetaValue::String(chat.source.clone()));
        Some(m)
    }
}

/// A pre-tokenizer's steps, in order, as comparable strings (regex splits, byte-level mapping with
/// or without its own split, digit splitting); other fields (offsets) do not change the tokens.
fn pre_signature(v: &serde_json::Value) -> Vec<String> {
    match v["type"].as_str().unwrap_or("") {
        "Sequence" => v["pretokenizers"].as_array().into_iter().flatten().flat_map(pre_signature).collect(),
        "Split" => vec![format!("split {} {}", v["pattern"], v["behavior"])],
        "ByteLevel" => vec![format!("byte-level regex={}", v["use_regex"])],
        "Digits" => vec![format!("digits individual={}", v["individual_digits"])],
        other => vec![other.to_string()],
    }
}

/// Byte-level BPE (`tokenizer.ggml.model = gpt2`): the merges as the file lists them, the split
/// of `tokenizer.ggml.pre`, bytes mapped to the printable alphabet the vocabulary is written in.
fn byte_level_bpe(meta: &MetaReader, vocab: Vocab) -> Result<(tokenizers::Tokenizer, PreTokenizerKind)> {
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
    Ok((inner, pre))
}

/// SentencePiece BPE (`tokenizer.ggml.model = llama`), as llama.cpp and transformers' Llama
/// converter run it: spaces become `▁` (and one is prepended when `tokenizer.ggml.add_space_prefix`,
/// default true); then adjacent pieces merge, the merge whose result has the highest score
/// (`tokenizer.ggml.scores`) first, until none applies; a character with no piece becomes its UTF-8
/// bytes' `<0xXX>` pieces. The file has no merge list, so it is derived: every way a normal piece
/// splits into two normal pieces, ranked by the piece's score.
fn sentencepiece_bpe(
    meta: &MetaReader,
    tokens: &[&str],
    vocab: Vocab,
    types: Option<&[i64]>,
) -> Result<tokenizers::Tokenizer> {
    let scores = meta.f32_array("tokenizer.ggml.scores")?;
    if scores.len() != tokens.len() {
        return Err(meta.bad(
            "tokenizer.ggml.scores",
            format!("{} scores, expected one per token ({})", scores.len(), tokens.len()),
        ));
    }
    let normal = |id: usize| types.is_none_or(|t| t[id] == TOKEN_TYPE_NORMAL);
    let mut ranked: Vec<(f32, usize, &str, &str)> = Vec::new();
    for (id, piece) in tokens.iter().enumerate().filter(|&(id, _)| normal(id)) {
        for (at, _) in piece.char_indices().skip(1) {
            let (l, r) = piece.split_at(at);
            if let (Some(&a), Some(&b)) = (vocab.get(l), vocab.get(r)) {
                if normal(a as usize) && normal(b as usize) {
                    ranked.push((scores[id], id, l, r));
                }
            }
        }
    }
    ranked.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
    let merges = ranked.into_iter().map(|(_, _, l, r)| (l.to_string(), r.to_string())).collect();
    let unk = meta.u64_opt("tokenizer.ggml.unknown_token_id")?.and_then(|i| tokens.get(i as usize));
    let mut bpe = BPE::builder().vocab_and_merges(vocab, merges).byte_fallback(true).fuse_unk(true);
    if let Some(unk) = unk {
        bpe = bpe.unk_token(unk.to_string());
    }
    let bpe = bpe.build().map_err(|e| meta.bad("tokenizer.ggml.scores", e.to_string()))?;
    let prefix = meta.bool_opt("tokenizer.ggml.add_space_prefix")?.unwrap_or(true);
    let bad_rule = |e: tokenizers::Error| meta.bad("tokenizer.ggml.model", e.to_string());
    let mut normalizers = Vec::new();
    if prefix {
        normalizers.push(NormalizerWrapper::Prepend(Prepend::new("▁".into())));
    }
    normalizers.push(NormalizerWrapper::Replace(Replace::new(" ", "▁").map_err(bad_rule)?));
    let mut decoders = vec![
        DecoderWrapper::Replace(Replace::new("▁", " ").map_err(bad_rule)?),
        DecoderWrapper::ByteFallback(ByteFallback::default()),
        DecoderWrapper::Fuse(Fuse::default()),
    ];
    if prefix {
        decoders.push(DecoderWrapper::Strip(Strip::new(' ', 1, 0)));
    }
    let mut inner = tokenizers::Tokenizer::new(bpe);
    inner.with_normalizer(Some(NormalizerSequence::new(normalizers))).map_err(bad_rule)?;
    inner.with_decoder(Some(DecoderSequence::new(decoders)));
    Ok(inner)
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
        m.insert("tokenizer.ggml.model".into(), MetaValue::String("bert".into()));
        let e = Tokenizer::from_gguf(Path::new("toy.gguf"), &m).unwrap_err().to_string();
        assert!(e.contains("tokenizer.ggml.model") && e.contains("bert"), "{e}");
        // SentencePiece needs its scores.
        m.insert("tokenizer.ggml.model".into(), MetaValue::String("llama".into()));
        let e = Tokenizer::from_gguf(Path::new("toy.gguf"), &m).unwrap_err().to_string();
        assert!(e.contains("tokenizer.ggml.scores"), "{e}");
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
