//! Golden test: the tokenizer and chat template built from the default model's GGUF metadata must
//! reproduce, id for id and byte for byte, what HF `transformers` produces from the same file
//! (`tests/data/golden_tokens.json`, written by `scripts/golden_tokens.py`).
//!
//! Needs the default model (`$EVOTUNE_MODEL` or ~/.cache/evotune/SmolLM2-135M-Instruct.Q4_1.gguf);
//! without it the test prints a note and passes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file;
use evotune::model::gguf::MetaValue;
use evotune::tokenizer::{ChatTemplate, Message, Prompt, Tokenizer};

fn model_path() -> Option<PathBuf> {
    evotune::model::fetch::default_model_for_tests()
}

fn to_meta(v: &gguf_file::Value) -> MetaValue {
    use gguf_file::Value as V;
    match v {
        V::U8(x) => MetaValue::U8(*x),
        V::I8(x) => MetaValue::I8(*x),
        V::U16(x) => MetaValue::U16(*x),
        V::I16(x) => MetaValue::I16(*x),
        V::U32(x) => MetaValue::U32(*x),
        V::I32(x) => MetaValue::I32(*x),
        V::U64(x) => MetaValue::U64(*x),
        V::I64(x) => MetaValue::I64(*x),
        V::F32(x) => MetaValue::F32(*x),
        V::F64(x) => MetaValue::F64(*x),
        V::Bool(x) => MetaValue::Bool(*x),
        V::String(x) => MetaValue::String(x.clone()),
        V::Array(x) => MetaValue::Array(x.iter().map(to_meta).collect()),
    }
}

/// GGUF metadata through candle's reader (independent of evotune's own GGUF reader).
fn read_metadata(path: &Path) -> BTreeMap<String, MetaValue> {
    let mut f = std::fs::File::open(path).unwrap();
    let content = gguf_file::Content::read(&mut f).unwrap();
    content.metadata.iter().map(|(k, v)| (k.clone(), to_meta(v))).collect()
}

#[derive(serde::Deserialize)]
struct Golden {
    vocab_size: usize,
    bos_token: String,
    eos_token: String,
    cases: Vec<Case>,
    chats: Vec<Chat>,
}

#[derive(serde::Deserialize)]
struct Case {
    text: String,
    ids: Vec<u32>,
    decoded: String,
    decoded_skip_special: String,
}

#[derive(serde::Deserialize)]
struct Chat {
    messages: Vec<Message>,
    add_generation_prompt: bool,
    rendered: String,
    ids: Vec<u32>,
}

fn golden() -> Golden {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/golden_tokens.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn tokenizer_matches_transformers_exactly() {
    let Some(path) = model_path() else { return };
    let meta = read_metadata(&path);
    let tok = Tokenizer::from_gguf(&path, &meta).unwrap();
    let g = golden();

    assert_eq!(tok.vocab_size(), g.vocab_size);
    assert_eq!(tok.id_to_token(tok.bos.unwrap()).unwrap(), g.bos_token);
    assert_eq!(tok.id_to_token(tok.eos).unwrap(), g.eos_token);
    // SmolLM2: BOS = <|im_start|> (1), EOS = <|im_end|> (2), no BOS on encode; <|endoftext|> (0)
    // also stops generation.
    assert_eq!((tok.bos, tok.eos, tok.add_bos), (Some(1), 2, false));
    assert_eq!(tok.stop_tokens, vec![2, 0]);

    let mut mismatches = Vec::new();
    for c in &g.cases {
        let ids = tok.encode(&c.text).unwrap();
        let ok_ids = ids == c.ids;
        let decoded = tok.decode(&c.ids, false).unwrap();
        let skipped = tok.decode(&c.ids, true).unwrap();
        println!(
            "{} {:?}: {} ids{}",
            if ok_ids && decoded == c.decoded && skipped == c.decoded_skip_special { "OK    " } else { "NOT OK" },
            c.text,
            c.ids.len(),
            if ok_ids { String::new() } else { format!(" expected {:?} got {:?}", c.ids, ids) }
        );
        if !ok_ids {
            mismatches.push(format!("encode {:?}: expected {:?}, got {:?}", c.text, c.ids, ids));
        }
        if decoded != c.decoded {
            mismatches.push(format!("decode {:?}: expected {:?}, got {:?}", c.ids, c.decoded, decoded));
        }
        if skipped != c.decoded_skip_special {
            mismatches
                .push(format!("decode(skip) {:?}: expected {:?}, got {:?}", c.ids, c.decoded_skip_special, skipped));
        }
    }
    for c in &g.chats {
        let ids = tok.encode(&c.rendered).unwrap();
        if ids != c.ids {
            mismatches.push(format!("chat ids: expected {:?}, got {:?}", c.ids, ids));
        }
    }
    assert!(mismatches.is_empty(), "{} mismatches:\n{}", mismatches.len(), mismatches.join("\n"));
}

#[test]
fn chat_template_matches_transformers_exactly() {
    let Some(path) = model_path() else { return };
    let meta = read_metadata(&path);
    let chat = ChatTemplate::from_gguf(&path, &meta).unwrap();
    let g = golden();
    assert_eq!(chat.bos_token, g.bos_token);
    assert_eq!(chat.eos_token, g.eos_token);
    for c in &g.chats {
        assert_eq!(chat.render(&c.messages, c.add_generation_prompt).unwrap(), c.rendered);
    }
    // Prompt::Chat without a system message gets SmolLM2's default one, as HF renders it.
    let first = &g.chats[0];
    assert_eq!(first.messages.len(), 1);
    let p = chat.render_prompt(&Prompt::Chat { system: None, user: first.messages[0].content.clone() }).unwrap();
    assert_eq!(p, first.rendered);
    assert!(p.contains("You are a helpful AI assistant named SmolLM, trained by Hugging Face"));
    let second = &g.chats[1];
    let p = chat
        .render_prompt(&Prompt::Chat {
            system: Some(second.messages[0].content.clone()),
            user: second.messages[1].content.clone(),
        })
        .unwrap();
    assert_eq!(p, second.rendered);
}

#[test]
fn saved_tokenizer_json_reloads_identically() {
    let Some(path) = model_path() else { return };
    let meta = read_metadata(&path);
    let tok = Tokenizer::from_gguf(&path, &meta).unwrap();
    let dir = tempfile::tempdir().unwrap();
    tok.save(&dir.path().join("tokenizer.json")).unwrap();
    std::fs::write(
        dir.path().join("tokenizer_config.json"),
        r#"{"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "add_bos_token": false}"#,
    )
    .unwrap();
    let back = Tokenizer::from_file(&dir.path().join("tokenizer.json"), dir.path()).unwrap();
    assert_eq!((back.bos, back.eos, back.add_bos), (tok.bos, tok.eos, tok.add_bos));
    assert_eq!(back.stop_tokens, tok.stop_tokens);
    for c in golden().cases {
        assert_eq!(back.encode(&c.text).unwrap(), c.ids, "{:?}", c.text);
    }
}
