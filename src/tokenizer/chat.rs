//! Chat templates. tmac recognises the common template families from the GGUF's
//! `tokenizer.chat_template` (or the vocabulary) and renders them directly; a general Jinja
//! engine is not needed for the models tmac targets.

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChatTemplate {
    /// `<|im_start|>role\ncontent<|im_end|>\n`; some models (SmolLM2) add a default system
    /// message when the conversation has none.
    ChatMl { default_system: Option<String> },
    /// `<|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>`
    Llama3,
    /// `[INST] content [/INST]` (Llama 2, Mistral)
    Llama2,
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
            ChatTemplate::Plain => "plain",
        }
    }

    /// The text of one message. `first` is true for the first message of a conversation
    /// (where a default system message or BOS goes).
    pub fn message(&self, role: &str, content: &str, first: bool) -> String {
        match self {
            ChatTemplate::ChatMl { default_system } => {
                let mut s = String::new();
                if let (true, Some(sys), false) = (first, default_system, role == "system") {
                    s += &format!("<|im_start|>system\n{sys}<|im_end|>\n");
                }
                s + &format!("<|im_start|>{role}\n{content}<|im_end|>\n")
            }
            ChatTemplate::Llama3 => {
                let bos = if first { "<|begin_of_text|>" } else { "" };
                format!("{bos}<|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|>")
            }
            ChatTemplate::Llama2 => match role {
                "system" => format!("<<SYS>>\n{content}\n<</SYS>>\n\n"),
                "user" => format!("[INST] {content} [/INST]"),
                _ => format!(" {content}</s>"),
            },
            ChatTemplate::Plain => format!("{role}: {content}\n"),
        }
    }

    /// The text that closes the assistant's reply (its end-of-turn token and separator).
    pub fn end_of_turn(&self) -> &'static str {
        match self {
            ChatTemplate::ChatMl { .. } => "<|im_end|>\n",
            ChatTemplate::Llama3 => "<|eot_id|>",
            ChatTemplate::Llama2 => "</s>",
            ChatTemplate::Plain => "\n",
        }
    }

    /// The text that opens the assistant's reply.
    pub fn assistant_prefix(&self) -> &'static str {
        match self {
            ChatTemplate::ChatMl { .. } => "<|im_start|>assistant\n",
            ChatTemplate::Llama3 => "<|start_header_id|>assistant<|end_header_id|>\n\n",
            ChatTemplate::Llama2 => "",
            ChatTemplate::Plain => "assistant:",
        }
    }
}

/// A system message the template inserts when the conversation has none, written as a string
/// literal `'<|im_start|>system\n...<|im_end|>` inside the template.
fn default_system(t: &str) -> Option<String> {
    let start = "<|im_start|>system\n";
    let body = &t[t.find(start)? + start.len()..];
    let end = body.find("<|im_end|>")?;
    let sys = &body[..end];
    // a literal, not a template expression such as {{ message['content'] }}
    (!sys.contains("{{") && !sys.contains("{%") && !sys.contains('\'')).then(|| sys.to_string())
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
        assert_eq!(
            c.message("user", "Hi", true),
            "<|im_start|>system\nYou are SmolLM<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        );
        assert_eq!(
            c.message("user", "Hi", false),
            "<|im_start|>user\nHi<|im_end|>\n"
        );
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
}
