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
        for u in &message.unsupported {
            out.push_str(&format!(
                "\n> Unsupported: \"{}\" states {} that no cited passage holds.\n",
                one_line(&u.sentence),
                u.facts.join(", ")
            ));
        }
        if let Some(note) = &message.draft_note {
            out.push_str(&format!(
                "\n> Shown instead of the model's answer: {}.\n",
                one_line(note)
            ));
        }
        if let Some(error) = &message.error {
            out.push_str(&format!("\n> Error: {}\n", one_line(error)));
        }
        if !message.citations.is_empty() {
            out.push('\n');
        }
        for c in &message.citations {
            let place =
                if c.location.is_empty() { String::new() } else { format!(", {}", c.location) };
            let origin = c.origin.as_deref().map(|o| format!(" ({o})")).unwrap_or_default();
            match &c.quote {
                Some(quote) => out.push_str(&format!(
                    "{}. {}{place}{origin}: \"{}\"\n",
                    c.number,
                    one_line(&c.source_title),
                    one_line(&excerpt(quote))
                )),
                // Nothing of a forgotten source is kept, not even its title.
                None => out.push_str(&format!("{}. source deleted\n", c.number)),
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
