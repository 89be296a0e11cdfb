//! The model's own chat template (Jinja, rendered with minijinja).
//!
//! STUB: filled in by the tokenizer work.

use crate::error::Result;

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

/// What a task asks the model: a chat turn (rendered with the template) or raw text.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Prompt {
    /// Rendered as [system?, user] with the generation prompt appended. With `system: None`
    /// the template's own default applies (SmolLM2 inserts its default system prompt).
    Chat { system: Option<String>, user: String },
    /// Used as-is.
    Raw(String),
}

pub struct ChatTemplate {
    pub source: String,
}

impl ChatTemplate {
    /// Renders `messages`; with `add_generation_prompt` the assistant header is appended.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        let _ = (messages, add_generation_prompt);
        todo!("tokenizer")
    }
    /// Renders a [`Prompt`] to the text the model sees.
    pub fn render_prompt(&self, prompt: &Prompt) -> Result<String> {
        let _ = prompt;
        todo!("tokenizer")
    }
}

// ---- PLACEHOLDER (wt-io branch only) ---------------------------------------------------------
// Added by the model-io work so that `model::loader` compiles before the tokenizer branch lands.
// The tokenizer branch's real constructors replace this block at merge: keep theirs, drop this.
impl ChatTemplate {
    /// PLACEHOLDER: keeps `tokenizer.chat_template` as the source, unparsed.
    pub fn from_gguf(
        path: &std::path::Path,
        metadata: &std::collections::BTreeMap<String, crate::model::gguf::MetaValue>,
    ) -> Result<ChatTemplate> {
        let _ = path;
        let source = match metadata.get("tokenizer.chat_template") {
            Some(crate::model::gguf::MetaValue::String(s)) => s.clone(),
            _ => String::new(),
        };
        Ok(ChatTemplate { source })
    }
    /// PLACEHOLDER: not implemented in this branch.
    pub fn from_hf_dir(dir: &std::path::Path) -> Result<ChatTemplate> {
        let _ = dir;
        Err(crate::Error::ChatTemplate { problem: "placeholder: tokenizer branch not merged".into() })
    }
}
