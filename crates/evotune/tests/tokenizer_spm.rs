//! SentencePiece GGUF tokenizers (`tokenizer.ggml.model = llama`: Gemma, Mistral v0.1–0.3,
//! Llama 2) against the sentencepiece library. `scripts/tiny_spm.py` trains a small SentencePiece
//! BPE model the way those were trained (byte fallback, digits split, whitespace kept), writes it
//! into a GGUF as llama.cpp's converter does, and records sentencepiece's ids for a set of texts
//! (spaces, newlines, digits, accents, emoji and CJK that fall back to bytes, the empty text).

use std::path::Path;

use evotune::model::gguf::GgufFile;
use evotune::tokenizer::Tokenizer;

fn fixture() -> (Tokenizer, Vec<(String, Vec<u32>)>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tiny/spm");
    let g = GgufFile::open(&dir.join("tokenizer.gguf")).unwrap();
    let tok = Tokenizer::from_gguf(&g.path, &g.metadata).unwrap();
    let cases: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("encodings.json")).unwrap()).unwrap();
    let cases = cases
        .iter()
        .map(|c| {
            let ids = c["ids"].as_array().unwrap().iter().map(|i| i.as_u64().unwrap() as u32).collect();
            (c["text"].as_str().unwrap().to_string(), ids)
        })
        .collect();
    (tok, cases)
}

/// Every text encodes to sentencepiece's ids (after the BOS the file asks for) and decodes back.
#[test]
fn sentencepiece_gguf_encodes_as_sentencepiece_does() {
    let (tok, cases) = fixture();
    assert!(tok.add_bos && tok.bos == Some(1) && tok.eos == 2);
    for (text, want) in &cases {
        let ids = tok.encode(text).unwrap();
        let (bos, rest) = ids.split_first().unwrap();
        assert_eq!((*bos, rest), (1, want.as_slice()), "{text:?}");
        assert_eq!(tok.decode(rest, true).unwrap(), *text, "{text:?} decoded");
    }
    // The fixture reaches the byte fallback and multi-character pieces.
    let bytes = |t: &str| tok.encode(t).unwrap().iter().filter(|&&i| (3..259).contains(&i)).count();
    assert!(bytes("emoji 🙂 here") >= 4);
    assert!(tok.encode("The quick brown fox").unwrap().len() <= 6);
}

/// The control tokens in text are parsed as themselves, as llama.cpp does with special parsing.
#[test]
fn control_tokens_are_parsed_out_of_the_text() {
    let (tok, _) = fixture();
    let ids = tok.encode("shells</s>").unwrap();
    assert_eq!(ids.last(), Some(&2), "{ids:?}");
    assert_eq!(tok.decode(&ids, true).unwrap(), "shells");
}
