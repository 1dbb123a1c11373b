//! Chat templates. tmac recognises the common template families from the GGUF's
//! `tokenizer.chat_template` (or the vocabulary) and renders them directly; a general Jinja
//! engine is not needed for the models tmac targets.

use std::ops::Range;

/// Rendered chat text, and the byte ranges in it that are the caller's plain text.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rendered {
    pub text: String,
    pub plain: Vec<Range<usize>>,
}

impl Rendered {
    /// Append template markup (control tokens in it are parsed).
    pub fn markup(&mut self, s: &str) -> &mut Rendered {
        self.text += s;
        self
    }

    /// Append the caller's text (taken literally).
    pub fn plain(&mut self, s: &str) -> &mut Rendered {
        let start = self.text.len();
        self.text += s;
        self.plain.push(start..self.text.len());
        self
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChatTemplate {
    /// `<|im_start|>role\ncontent<|im_end|>\n`; some models (SmolLM2) add a default system
    /// message when the conversation has none.
    ChatMl { default_system: Option<String> },
    /// `<|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>`
    Llama3,
    /// `[INST] content [/INST]` (Llama 2, Mistral)
    Llama2,
    /// `<start_of_turn>role\ncontent<end_of_turn>\n` with the assistant as `model` and a system
    /// message merged into the next user turn (Gemma).
    Gemma,
    /// `<|role|>\ncontent<|end|>\n` (Phi-3)
    Phi3,
    /// No known template: `role: content\n`.
    Plain,
}

impl ChatTemplate {
    pub fn detect(template: Option<&str>, has_token: impl Fn(&str) -> bool) -> ChatTemplate {
        let t = template.unwrap_or("");
        if t.contains("<|im_start|>") || (t.is_empty() && has_token("<|im_start|>")) {
            ChatTemplate::ChatMl {
                default_system: default_system(t),
            }
        } else if t.contains("<|start_header_id|>")
            || (t.is_empty() && has_token("<|start_header_id|>"))
        {
            ChatTemplate::Llama3
        } else if t.contains("<start_of_turn>") || (t.is_empty() && has_token("<start_of_turn>")) {
            ChatTemplate::Gemma
        } else if (t.contains("<|assistant|>") && t.contains("<|end|>"))
            || (t.is_empty() && has_token("<|assistant|>") && has_token("<|end|>"))
        {
            ChatTemplate::Phi3
        } else if t.contains("[INST]") {
            ChatTemplate::Llama2
        } else {
            ChatTemplate::Plain
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            ChatTemplate::ChatMl { .. } => "chatml",
            ChatTemplate::Llama3 => "llama3",
            ChatTemplate::Llama2 => "llama2",
            ChatTemplate::Gemma => "gemma",
            ChatTemplate::Phi3 => "phi3",
            ChatTemplate::Plain => "plain",
        }
    }

    /// One message: its text, with the caller's content marked as plain text (no control
    /// tokens are parsed there). `first` is true for the first message of a conversation
    /// (where a default system message or BOS goes). A template that merges system messages
    /// into the next turn (Gemma) keeps them in `held` and renders nothing for them.
    pub fn message(&self, role: &str, content: &str, first: bool, held: &mut String) -> Rendered {
        let mut r = Rendered::default();
        match self {
            ChatTemplate::ChatMl { default_system } => {
                if let (true, Some(sys), false) = (first, default_system, role == "system") {
                    r.markup(&format!("<|im_start|>system\n{sys}<|im_end|>\n"));
                }
                r.markup(&format!("<|im_start|>{role}\n"))
                    .plain(content)
                    .markup("<|im_end|>\n");
            }
            ChatTemplate::Llama3 => {
                let bos = if first { "<|begin_of_text|>" } else { "" };
                r.markup(&format!(
                    "{bos}<|start_header_id|>{role}<|end_header_id|>\n\n"
                ))
                .plain(content)
                .markup("<|eot_id|>");
            }
            ChatTemplate::Llama2 => {
                let (open, close) = match role {
                    "system" => ("<<SYS>>\n", "\n<</SYS>>\n\n"),
                    "user" => ("[INST] ", " [/INST]"),
                    _ => (" ", "</s>"),
                };
                r.markup(open).plain(content).markup(close);
            }
            ChatTemplate::Gemma => {
                // as llama.cpp's gemma template: contents trimmed, system text into the next
                // user turn
                if role == "system" {
                    *held += content.trim();
                    return r;
                }
                let role = if role == "assistant" { "model" } else { role };
                r.markup(&format!("<start_of_turn>{role}\n"));
                if !held.is_empty() && role != "model" {
                    r.plain(held).markup("\n\n");
                    held.clear();
                }
                r.plain(content.trim()).markup("<end_of_turn>\n");
            }
            ChatTemplate::Phi3 => {
                r.markup(&format!("<|{role}|>\n"))
                    .plain(content)
                    .markup("<|end|>\n");
            }
            ChatTemplate::Plain => {
                r.markup(&format!("{role}: ")).plain(content).markup("\n");
            }
        }
        r
    }

    /// The text that closes the assistant's reply (its end-of-turn token and separator).
    pub fn end_of_turn(&self) -> &'static str {
        match self {
            ChatTemplate::ChatMl { .. } => "<|im_end|>\n",
            ChatTemplate::Llama3 => "<|eot_id|>",
            ChatTemplate::Llama2 => "</s>",
            ChatTemplate::Gemma => "<end_of_turn>\n",
            ChatTemplate::Phi3 => "<|end|>\n",
            ChatTemplate::Plain => "\n",
        }
    }

    /// The text that opens the assistant's reply.
    pub fn assistant_prefix(&self) -> &'static str {
        match self {
            ChatTemplate::ChatMl { .. } => "<|im_start|>assistant\n",
            ChatTemplate::Llama3 => "<|start_header_id|>assistant<|end_header_id|>\n\n",
            ChatTemplate::Llama2 => "",
            ChatTemplate::Gemma => "<start_of_turn>model\n",
            ChatTemplate::Phi3 => "<|assistant|>\n",
            ChatTemplate::Plain => "assistant:",
        }
    }
}

/// A system message the template inserts when the conversation has none, written as a string
/// literal `'<|im_start|>system\n...<|im_end|>` inside the template. The newline may be a real
/// one or, as in Qwen2.5's template, the two characters `\n`; the first such literal wins
/// (Qwen2.5's tool-use branch comes first and is an expression, so it is passed over).
fn default_system(t: &str) -> Option<String> {
    let mut rest = t;
    while let Some(at) = rest.find("<|im_start|>system") {
        rest = &rest[at + "<|im_start|>system".len()..];
        let body = match (rest.strip_prefix('\n'), rest.strip_prefix("\\n")) {
            (Some(b), _) | (None, Some(b)) => b,
            _ => continue,
        };
        let Some(end) = body.find("<|im_end|>") else {
            continue;
        };
        let sys = &body[..end];
        // a literal, not a template expression such as {{ message['content'] }}
        if !sys.is_empty() && !["{{", "{%", "'", "+"].iter().any(|x| sys.contains(x)) {
            return Some(sys.replace("\\n", "\n"));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smollm_default_system() {
        let t = "{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are SmolLM<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}";
        let c = ChatTemplate::detect(Some(t), |_| false);
        assert_eq!(
            c,
            ChatTemplate::ChatMl {
                default_system: Some("You are SmolLM".into())
            }
        );
        let mut held = String::new();
        assert_eq!(
            c.message("user", "Hi", true, &mut held).text,
            "<|im_start|>system\nYou are SmolLM<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        );
        let m = c.message("user", "Hi", false, &mut held);
        assert_eq!(m.text, "<|im_start|>user\nHi<|im_end|>\n");
        assert_eq!(&m.text[m.plain[0].clone()], "Hi");
    }

    #[test]
    fn plain_chatml_has_no_default_system() {
        let t = "{% for m in messages %}{{'<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n'}}{% endfor %}";
        assert_eq!(
            ChatTemplate::detect(Some(t), |_| false),
            ChatTemplate::ChatMl {
                default_system: None
            }
        );
    }

    #[test]
    fn llama3_by_token() {
        assert_eq!(
            ChatTemplate::detect(None, |t| t == "<|start_header_id|>"),
            ChatTemplate::Llama3
        );
    }

    #[test]
    fn qwen25_default_system_is_found_past_the_tools_branch() {
        // Qwen2.5's template as its GGUF holds it: newlines inside the Jinja literals are the two
        // characters backslash and n, and the tools branch's system turn comes first
        let t = r#"{%- if tools %}{{- '<|im_start|>system\n' }}{%- if messages[0]['role'] == 'system' %}{{- messages[0]['content'] }}{%- else %}{{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}{%- endif %}{%- else %}{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}{%- else %}{{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}{%- endif %}{%- endif %}"#;
        assert_eq!(
            ChatTemplate::detect(Some(t), |_| false),
            ChatTemplate::ChatMl {
                default_system: Some(
                    "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.".into()
                )
            }
        );
    }

    #[test]
    fn gemma_merges_the_system_message_into_the_first_user_turn() {
        let c = ChatTemplate::detect(Some("{{ '<start_of_turn>' + role }}"), |_| false);
        assert_eq!(c, ChatTemplate::Gemma);
        let mut held = String::new();
        assert_eq!(c.message("system", " Be brief. ", true, &mut held).text, "");
        assert_eq!(
            c.message("user", "Hi ", false, &mut held).text,
            "<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n"
        );
        assert_eq!(
            c.message("assistant", "Hello", false, &mut held).text,
            "<start_of_turn>model\nHello<end_of_turn>\n"
        );
        assert_eq!(c.assistant_prefix(), "<start_of_turn>model\n");
    }

    #[test]
    fn phi3_by_tokens() {
        let c = ChatTemplate::detect(None, |t| t == "<|assistant|>" || t == "<|end|>");
        assert_eq!(c, ChatTemplate::Phi3);
        let mut held = String::new();
        assert_eq!(
            c.message("user", "Hi", true, &mut held).text,
            "<|user|>\nHi<|end|>\n"
        );
    }
}
