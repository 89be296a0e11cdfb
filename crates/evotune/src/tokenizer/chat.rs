//! The model's own chat template (Jinja, rendered with minijinja).
//!
//! Rendering follows HF `transformers`' `apply_chat_template`, so that a prompt here is the prompt
//! the model was trained on:
//! - the environment uses `trim_blocks` and `lstrip_blocks`, as transformers' does;
//! - the context holds `messages`, `add_generation_prompt`, `bos_token`, `eos_token` and the
//!   function `raise_exception(msg)`;
//! - the Python string and dict methods templates call (`.strip()`, `.startswith()`, `.split()`,
//!   `.items()`, …) are provided by [`python_method`];
//! - `strftime_now` is deliberately *not* defined: templates then fall back to their fixed date,
//!   which keeps every rendering (and so every ES run) a pure function of its inputs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use minijinja::value::{from_args, Kwargs, Value, ValueKind};
use minijinja::{Environment, ErrorKind, State};

use crate::error::{Error, Result};
use crate::tokenizer::{read_json_opt, special_token_name};

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Message { role: role.into(), content: content.into() }
    }
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

impl Prompt {
    /// The text the prompt asks: the user turn, or the raw text.
    pub fn text(&self) -> &str {
        match self {
            Prompt::Chat { user, .. } => user,
            Prompt::Raw(text) => text,
        }
    }
}

/// ChatML, the fallback for a model whose files carry no template: `<|im_start|>{role}\n{content}
/// <|im_end|>\n` per message, then `<|im_start|>assistant\n` as the generation prompt. A model
/// trained on another format will see an unfamiliar prompt; give it its template in that case.
pub const CHATML_TEMPLATE: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

const TEMPLATE_NAME: &str = "chat";

/// A compiled chat template and the special-token strings its context offers.
pub struct ChatTemplate {
    /// The Jinja source.
    pub source: String,
    /// `bos_token` in the template context (empty when the model has none).
    pub bos_token: String,
    /// `eos_token` in the template context.
    pub eos_token: String,
    /// Further template variables (`--chat-template-arg KEY=VALUE`), e.g. Qwen3's `enable_thinking`.
    pub args: BTreeMap<String, Value>,
    env: Environment<'static>,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("source", &self.source)
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .field("args", &self.args)
            .finish()
    }
}

impl Clone for ChatTemplate {
    fn clone(&self) -> Self {
        // The source compiled once already, so compiling it again cannot fail.
        let mut t = ChatTemplate::new(self.source.clone(), self.bos_token.clone(), self.eos_token.clone())
            .expect("a template that compiled once compiles again");
        t.args = self.args.clone();
        t
    }
}

impl ChatTemplate {
    /// Compiles `source`; errors carry minijinja's line and reason. A template with a thinking
    /// switch (Qwen3's `enable_thinking`) starts with it off: an ES reward reads the answer, and a
    /// thinking trace would spend the completion's token budget before it.
    pub fn new(source: impl Into<String>, bos_token: impl Into<String>, eos_token: impl Into<String>) -> Result<Self> {
        let source = source.into();
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(python_method);
        env.add_function("raise_exception", raise_exception);
        env.add_filter("tojson", tojson);
        env.add_template_owned(TEMPLATE_NAME, source.clone()).map_err(template_error)?;
        let mut args = BTreeMap::new();
        if source.contains("enable_thinking") {
            args.insert("enable_thinking".to_string(), Value::from(false));
        }
        Ok(ChatTemplate { source, bos_token: bos_token.into(), eos_token: eos_token.into(), args, env })
    }

    /// ChatML (see [`CHATML_TEMPLATE`]), for models without a template.
    pub fn chatml() -> Self {
        ChatTemplate::new(CHATML_TEMPLATE, "", "<|im_end|>").expect("the built-in ChatML template compiles")
    }

    /// ChatML with a model's own BOS and EOS token texts (an empty EOS keeps `<|im_end|>`).
    pub fn chatml_with(bos: String, eos: String) -> Self {
        let mut t = ChatTemplate::chatml();
        t.bos_token = bos;
        if !eos.is_empty() {
            t.eos_token = eos;
        }
        t
    }

    /// The template of a HF model directory: `chat_template.jinja` if present, else
    /// `tokenizer_config.json`'s `chat_template` (a string, or a list of `{name, template}` of which
    /// `default` is taken). Without either: ChatML.
    pub fn from_hf_dir(dir: &Path) -> Result<Self> {
        let cfg_path = dir.join("tokenizer_config.json");
        let cfg = read_json_opt(&cfg_path)?;
        let special =
            |field: &str| cfg.as_ref().and_then(|c| c.get(field)).and_then(special_token_name).unwrap_or_default();
        let (bos, eos) = (special("bos_token"), special("eos_token"));
        let bad = |path: PathBuf, problem: String| Error::Tokenizer { path, problem };

        let jinja_path = dir.join("chat_template.jinja");
        let source = match std::fs::read_to_string(&jinja_path) {
            Ok(s) => Some(s),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match cfg
                .as_ref()
                .and_then(|c| c.get("chat_template"))
            {
                None | Some(serde_json::Value::Null) => None,
                Some(serde_json::Value::String(s)) => Some(s.clone()),
                Some(serde_json::Value::Array(list)) => {
                    let named = |want: &str| list.iter().find(|t| t.get("name").and_then(|n| n.as_str()) == Some(want));
                    let t = named("default").or(list.first()).and_then(|t| t.get("template")).and_then(|t| t.as_str());
                    Some(
                        t.ok_or_else(|| {
                            bad(cfg_path.clone(), "`chat_template` list has no `default` template".into())
                        })?
                        .to_string(),
                    )
                }
                Some(_) => return Err(bad(cfg_path.clone(), "`chat_template` is neither a string nor a list".into())),
            },
            Err(e) => return Err(Error::io(&jinja_path, e)),
        };
        match source {
            Some(src) => ChatTemplate::new(src, bos, eos).map_err(|e| bad(dir.to_path_buf(), e.to_string())),
            None => Ok(ChatTemplate::chatml_with(bos, eos)),
        }
    }

    /// Sets template variables from `KEY = value` pairs (TOML values: `true`, `3`, `"text"`).
    pub fn set_args(&mut self, args: &toml::Table) {
        for (k, v) in args {
            self.args.insert(k.clone(), Value::from_serialize(v));
        }
    }

    /// Renders `messages`; with `add_generation_prompt` the assistant header is appended.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        let tmpl = self.env.get_template(TEMPLATE_NAME).map_err(template_error)?;
        let ctx = minijinja::context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => &self.bos_token,
            eos_token => &self.eos_token,
            ..Value::from(self.args.clone())
        };
        tmpl.render(ctx).map_err(template_error)
    }

    /// Renders a [`Prompt`] to the text the model sees.
    pub fn render_prompt(&self, prompt: &Prompt) -> Result<String> {
        match prompt {
            Prompt::Raw(text) => Ok(text.clone()),
            Prompt::Chat { system, user } => {
                let mut messages = Vec::with_capacity(2);
                if let Some(s) = system {
                    messages.push(Message::new("system", s.as_str()));
                }
                messages.push(Message::new("user", user.as_str()));
                self.render(&messages, true)
            }
        }
    }
}

/// minijinja's error with its template line, as one readable line.
fn template_error(e: minijinja::Error) -> Error {
    let mut problem = e.to_string();
    if let Some(line) = e.line() {
        if !problem.contains("line") {
            problem = format!("line {line}: {problem}");
        }
    }
    Error::ChatTemplate { problem }
}

/// `raise_exception(msg)`: the template rejects its input (e.g. roles out of order).
fn raise_exception(msg: String) -> std::result::Result<Value, minijinja::Error> {
    Err(minijinja::Error::new(ErrorKind::InvalidOperation, format!("template raised: {msg}")))
}

/// `x | tojson` (tool definitions in Qwen/Llama templates): Python `json.dumps(x,
/// ensure_ascii=False)` layout, as transformers' `tojson`. One difference: map keys come out
/// sorted (minijinja's maps are ordered by key), where Python keeps insertion order.
fn tojson(value: &Value, kwargs: Kwargs) -> std::result::Result<Value, minijinja::Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    kwargs.assert_all_used()?;
    let json = serde_json::to_value(value)
        .map_err(|e| minijinja::Error::new(ErrorKind::InvalidOperation, format!("tojson: {e}")))?;
    let text = match indent {
        None => python_json(&json, None, 0),
        Some(n) => python_json(&json, Some(n), 0),
    };
    Ok(Value::from_safe_string(text))
}

/// Python `json.dumps` layout: `", "` and `": "` separators, or newlines with `indent` spaces.
fn python_json(v: &serde_json::Value, indent: Option<usize>, depth: usize) -> String {
    let (open_sep, item_sep, close_sep) = match indent {
        None => (String::new(), ", ".to_string(), String::new()),
        Some(n) => (
            format!("\n{}", " ".repeat(n * (depth + 1))),
            format!(",\n{}", " ".repeat(n * (depth + 1))),
            format!("\n{}", " ".repeat(n * depth)),
        ),
    };
    match v {
        serde_json::Value::Array(a) if !a.is_empty() => {
            let items: Vec<String> = a.iter().map(|x| python_json(x, indent, depth + 1)).collect();
            format!("[{open_sep}{}{close_sep}]", items.join(&item_sep))
        }
        serde_json::Value::Object(o) if !o.is_empty() => {
            let items: Vec<String> = o
                .iter()
                .map(|(k, x)| {
                    format!("{}: {}", serde_json::Value::String(k.clone()), python_json(x, indent, depth + 1))
                })
                .collect();
            format!("{{{open_sep}{}{close_sep}}}", items.join(&item_sep))
        }
        other => other.to_string(),
    }
}

/// Python methods on strings, lists and dicts that HF chat templates call and minijinja lacks.
/// Semantics follow Python's (`split()` without a separator splits on runs of whitespace, etc.).
pub fn python_method(
    state: &State,
    value: &Value,
    method: &str,
    args: &[Value],
) -> std::result::Result<Value, minijinja::Error> {
    let unknown = || Err(minijinja::Error::from(ErrorKind::UnknownMethod));
    match value.kind() {
        ValueKind::String => {
            let s = value.as_str().unwrap_or_default();
            let strip_set = |chars: Option<&str>| -> Box<dyn Fn(char) -> bool> {
                match chars {
                    None => Box::new(char::is_whitespace),
                    Some(set) => {
                        let set: Vec<char> = set.chars().collect();
                        Box::new(move |c| set.contains(&c))
                    }
                }
            };
            match method {
                "strip" | "lstrip" | "rstrip" => {
                    let (chars,): (Option<&str>,) = from_args(args)?;
                    let f = strip_set(chars);
                    let out = match method {
                        "strip" => s.trim_matches(&f),
                        "lstrip" => s.trim_start_matches(&f),
                        _ => s.trim_end_matches(f),
                    };
                    Ok(Value::from(out))
                }
                "startswith" | "endswith" => {
                    let (prefix,): (Value,) = from_args(args)?;
                    let test = |p: &str| if method == "startswith" { s.starts_with(p) } else { s.ends_with(p) };
                    // Python accepts one string or a tuple of them.
                    if let Some(p) = prefix.as_str() {
                        Ok(Value::from(test(p)))
                    } else {
                        let mut any = false;
                        for p in prefix.try_iter()? {
                            any |= p.as_str().map(test).unwrap_or(false);
                        }
                        Ok(Value::from(any))
                    }
                }
                "split" | "rsplit" => {
                    let (sep, maxsplit): (Option<&str>, Option<i64>) = from_args(args)?;
                    let max = maxsplit.filter(|&m| m >= 0).map(|m| m as usize);
                    let parts: Vec<String> = match (sep, method) {
                        (None, _) => {
                            // Whitespace split; maxsplit honoured from the left only.
                            let words: Vec<&str> = s.split_whitespace().collect();
                            match max {
                                Some(m) if m < words.len() && method == "split" => {
                                    let mut out: Vec<String> = Vec::new();
                                    let mut rest = s.trim_start();
                                    for _ in 0..m {
                                        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                                        out.push(rest[..end].to_string());
                                        rest = rest[end..].trim_start();
                                    }
                                    out.push(rest.to_string());
                                    out
                                }
                                _ => words.into_iter().map(str::to_string).collect(),
                            }
                        }
                        (Some(""), _) => {
                            return Err(minijinja::Error::new(ErrorKind::InvalidOperation, "split: empty separator"))
                        }
                        (Some(sep), "split") => match max {
                            Some(m) => s.splitn(m + 1, sep).map(str::to_string).collect(),
                            None => s.split(sep).map(str::to_string).collect(),
                        },
                        (Some(sep), _) => {
                            let mut v: Vec<String> = match max {
                                Some(m) => s.rsplitn(m + 1, sep).map(str::to_string).collect(),
                                None => s.rsplit(sep).map(str::to_string).collect(),
                            };
                            v.reverse();
                            v
                        }
                    };
                    Ok(Value::from(parts))
                }
                "upper" => Ok(Value::from(s.to_uppercase())),
                "lower" => Ok(Value::from(s.to_lowercase())),
                "capitalize" => {
                    let mut c = s.chars();
                    Ok(Value::from(match c.next() {
                        Some(f) => f.to_uppercase().chain(c.flat_map(|x| x.to_lowercase())).collect::<String>(),
                        None => String::new(),
                    }))
                }
                "title" => state.apply_filter("title", std::slice::from_ref(value)),
                "replace" => {
                    let (old, new, count): (&str, &str, Option<i64>) = from_args(args)?;
                    Ok(Value::from(match count {
                        Some(n) if n >= 0 => s.replacen(old, new, n as usize),
                        _ => s.replace(old, new),
                    }))
                }
                "find" => {
                    let (needle,): (&str,) = from_args(args)?;
                    Ok(Value::from(s.find(needle).map(|b| s[..b].chars().count() as i64).unwrap_or(-1)))
                }
                "count" => {
                    let (needle,): (&str,) = from_args(args)?;
                    Ok(Value::from(if needle.is_empty() { s.chars().count() + 1 } else { s.matches(needle).count() }))
                }
                "isdigit" | "isalpha" | "isspace" => {
                    let _: () = from_args(args)?;
                    let f: fn(char) -> bool = match method {
                        "isdigit" => |c| c.is_ascii_digit(),
                        "isalpha" => char::is_alphabetic,
                        _ => char::is_whitespace,
                    };
                    Ok(Value::from(!s.is_empty() && s.chars().all(f)))
                }
                _ => unknown(),
            }
        }
        ValueKind::Map => match method {
            "items" => {
                let _: () = from_args(args)?;
                state.apply_filter("items", std::slice::from_ref(value))
            }
            "keys" => {
                let _: () = from_args(args)?;
                Ok(Value::from(value.try_iter()?.collect::<Vec<_>>()))
            }
            "values" => {
                let _: () = from_args(args)?;
                let vals = value.try_iter()?.map(|k| value.get_item(&k)).collect::<std::result::Result<Vec<_>, _>>()?;
                Ok(Value::from(vals))
            }
            "get" => {
                let (key, default): (Value, Option<Value>) = from_args(args)?;
                let v = value.get_item(&key)?;
                Ok(if v.is_undefined() { default.unwrap_or(Value::from(())) } else { v })
            }
            _ => unknown(),
        },
        _ => unknown(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMOLLM2: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    #[test]
    fn smollm2_default_system_prompt() {
        let t = ChatTemplate::new(SMOLLM2, "<|im_start|>", "<|im_end|>").unwrap();
        let p = t.render_prompt(&Prompt::Chat { system: None, user: "Hi".into() }).unwrap();
        assert_eq!(
            p,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
             <|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        let p = t.render_prompt(&Prompt::Chat { system: Some("Be brief.".into()), user: "Hi".into() }).unwrap();
        assert_eq!(
            p,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(t.render_prompt(&Prompt::Raw("2+2=".into())).unwrap(), "2+2=");
    }

    #[test]
    fn chatml_fallback() {
        let t = ChatTemplate::chatml();
        let p = t.render(&[Message::new("user", "x")], false).unwrap();
        assert_eq!(p, "<|im_start|>user\nx<|im_end|>\n");
    }

    #[test]
    fn trim_and_lstrip_blocks_like_transformers() {
        // With trim_blocks/lstrip_blocks the block tags leave no newlines or indentation behind.
        let src =
            "{% for m in messages %}\n    {% if m.role == 'user' %}\n[{{ m.content }}]\n    {% endif %}\n{% endfor %}";
        let t = ChatTemplate::new(src, "", "").unwrap();
        assert_eq!(t.render(&[Message::new("user", "a"), Message::new("user", "b")], false).unwrap(), "[a]\n[b]\n");
    }

    #[test]
    fn python_methods_and_raise_exception() {
        let src = "{{ messages[0].content.strip() }}|{{ messages[0].content.split() | join(',') }}|\
                   {{ messages[0].content.startswith(' a') }}|{{ 'a-b-c'.split('-', 1) | join('+') }}|\
                   {{ 'xxhixx'.strip('x') }}|{{ {'k': 1}.get('z', 7) }}|{{ 'Ab'.upper() }}{{ 'Ab'.lower() }}";
        let t = ChatTemplate::new(src, "", "").unwrap();
        let out = t.render(&[Message::new("user", " a b  ")], false).unwrap();
        assert_eq!(out, "a b|a,b|True|a+b-c|hi|7|ABab");

        let t = ChatTemplate::new("{{ raise_exception('roles must alternate') }}", "", "").unwrap();
        let e = t.render(&[], false).unwrap_err().to_string();
        assert!(e.contains("roles must alternate"), "{e}");
    }

    #[test]
    fn tojson_matches_python_layout() {
        let t = ChatTemplate::new("{{ {'b': [1, 2], 'a': 'é'} | tojson }}", "", "").unwrap();
        assert_eq!(t.render(&[], false).unwrap(), r#"{"a": "é", "b": [1, 2]}"#);
    }

    #[test]
    fn hf_dir_sources_in_order_jinja_file_then_config() {
        let dir = tempfile::tempdir().unwrap();
        let user = [Message::new("user", "q")];
        // No files at all: ChatML.
        assert_eq!(ChatTemplate::from_hf_dir(dir.path()).unwrap().source, CHATML_TEMPLATE);
        // tokenizer_config.json, list form with a `default` entry; special tokens as objects.
        std::fs::write(
            dir.path().join("tokenizer_config.json"),
            r#"{"bos_token": {"content": "<s>"}, "eos_token": "</s>",
                "chat_template": [{"name": "tool_use", "template": "T"},
                                  {"name": "default", "template": "{{ bos_token }}{{ messages[0].content }}{{ eos_token }}"}]}"#,
        )
        .unwrap();
        let t = ChatTemplate::from_hf_dir(dir.path()).unwrap();
        assert_eq!(t.render(&user, false).unwrap(), "<s>q</s>");
        // chat_template.jinja wins over the config.
        std::fs::write(dir.path().join("chat_template.jinja"), "[{{ messages[0].content }}]").unwrap();
        assert_eq!(ChatTemplate::from_hf_dir(dir.path()).unwrap().render(&user, false).unwrap(), "[q]");
    }

    #[test]
    fn bad_template_is_an_error() {
        let e = ChatTemplate::new("{% for x in %}", "", "").unwrap_err().to_string();
        assert!(e.starts_with("chat template:"), "{e}");
    }
}
