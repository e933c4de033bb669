//! A conversation as Markdown: each message under its speaker, citations as a numbered list
//! under the answer that used them ("source deleted" once a source is forgotten).

use super::{Conversation, Message, MessageState, Role};

pub(crate) fn markdown(conversation: &Conversation, messages: &[Message]) -> String {
    let mut out = format!("# {}\n", one_line(&conversation.title));
    for message in messages {
        let who = match message.role {
            Role::User => "You",
            _ => "Twin",
        };
        let state = match message.state {
            MessageState::Complete => "",
            MessageState::Cancelled => " (stopped)",
            MessageState::Failed => " (failed)",
            MessageState::Streaming => " (unfinished)",
        };
        out.push_str(&format!("\n## {who}{state}\n\n{}\n", message.content.trim_end()));
        if let Some(error) = &message.error {
            out.push_str(&format!("\n> Error: {}\n", one_line(error)));
        }
        if !message.citations.is_empty() {
            out.push('\n');
        }
        for c in &message.citations {
            let place =
                if c.location.is_empty() { String::new() } else { format!(", {}", c.location) };
            match &c.quote {
                Some(quote) => out.push_str(&format!(
                    "{}. {}{place}: \"{}\"\n",
                    c.number,
                    one_line(&c.source_title),
                    one_line(&excerpt(quote))
                )),
                None => out.push_str(&format!(
                    "{}. {}{place}: source deleted\n",
                    c.number,
                    one_line(&c.source_title)
                )),
            }
        }
    }
    out
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn excerpt(text: &str) -> String {
    let short: String = text.chars().take(300).collect();
    if short.len() < text.len() { short + "…" } else { short }
}
