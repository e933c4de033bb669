//! Exporting a twin as plain files a person can read without Doppel: every conversation as
//! Markdown with its citations, the verified answers, the persona, and the sources as CSV.
//!
//! Everything is read in one read transaction, so the files agree with each other, and
//! written into a hidden folder beside the destination that is renamed into place at the end:
//! a failed or killed export leaves no half-written folder under the chosen name. It never
//! writes into a folder that holds anything, and never into the data directory.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::backup::files::{Cleanup, beside, rename_durably};
use crate::chat::prompt::Persona;
use crate::chat::{Conversation, Message, VerifiedAnswer};
use crate::error::{Error, Result};
use crate::model::*;
use crate::store;

/// An export to write.
#[derive(Debug, Clone)]
pub struct ExportRequest {
    /// The twin exported.
    pub twin: TwinId,
    /// The folder to create (it may exist if empty).
    pub dir: PathBuf,
}

/// An export written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportReport {
    /// The folder.
    pub dir: PathBuf,
    /// Conversations written, one file each under `conversations/`.
    pub conversations: usize,
    /// Verified answers in `verified-answers.md`.
    pub verified_answers: usize,
    /// Sources listed in `sources.csv`.
    pub sources: usize,
}

struct Contents {
    twin: Twin,
    persona: Persona,
    verified: Vec<VerifiedAnswer>,
    sources: Vec<Source>,
    conversations: Vec<(Conversation, Vec<Message>)>,
}

/// Writes a twin's conversations, verified answers, persona and source list as plain files
/// into a new folder.
pub(crate) fn export(
    readers: &store::ReadPool,
    data_dir: &Path,
    request: &ExportRequest,
) -> Result<ExportReport> {
    let dest = std::path::absolute(&request.dir).map_err(|e| Error::io(&request.dir, e))?;
    check_destination(data_dir, &dest)?;
    let contents = readers.with(|conn| {
        let tx = conn.unchecked_transaction()?;
        let mut conversations = Vec::new();
        for conversation in store::chat::conversations(&tx, request.twin)? {
            let messages = store::chat::messages(&tx, &conversation.id)?;
            conversations.push((conversation, messages));
        }
        Ok(Contents {
            twin: store::twin(&tx, request.twin)?,
            persona: store::chat::persona(&tx, request.twin)?,
            verified: store::chat::verified_answers(&tx, request.twin)?,
            sources: store::sources(&tx, request.twin)?,
            conversations,
        })
    })?;
    let staging = beside(&dest, "exporting")?;
    crate::backup::files::remove_any(&staging)?;
    let cleanup = Cleanup(vec![staging.clone()]);
    write_all(&staging, &contents)?;
    if dest.exists() {
        // An empty folder is replaced by the rename.
        std::fs::remove_dir(&dest).map_err(|e| Error::io(&dest, e))?;
    }
    rename_durably(&staging, &dest)?;
    cleanup.keep();
    tracing::info!(
        conversations = contents.conversations.len(),
        sources = contents.sources.len(),
        "twin exported"
    );
    Ok(ExportReport {
        dir: dest,
        conversations: contents.conversations.len(),
        verified_answers: contents.verified.len(),
        sources: contents.sources.len(),
    })
}

fn check_destination(data_dir: &Path, dest: &Path) -> Result<()> {
    let data_dir = data_dir.canonicalize().map_err(|e| Error::io(data_dir, e))?;
    let parent = crate::backup::files::parent_of(dest);
    let parent = parent.canonicalize().map_err(|e| Error::io(&parent, e))?;
    if parent.starts_with(&data_dir) {
        return Err(Error::InvalidInput(format!(
            "{} is inside the data directory: export elsewhere",
            dest.display()
        )));
    }
    if dest.exists() {
        let empty = std::fs::read_dir(dest).map_err(|e| Error::io(dest, e))?.next().is_none();
        if !dest.is_dir() || !empty {
            return Err(Error::AlreadyExists {
                what: "file or folder",
                name: dest.display().to_string(),
            });
        }
    }
    Ok(())
}

fn write_all(dir: &Path, c: &Contents) -> Result<()> {
    let conversations_dir = dir.join("conversations");
    std::fs::create_dir_all(&conversations_dir).map_err(|e| Error::io(&conversations_dir, e))?;
    write(&dir.join("README.md"), &readme(c))?;
    write(&dir.join("persona.md"), &persona(&c.persona))?;
    write(&dir.join("verified-answers.md"), &verified(&c.verified))?;
    write(&dir.join("sources.csv"), &sources_csv(&c.sources)?)?;
    for (conversation, messages) in &c.conversations {
        let name = format!("{}-{}.md", date(conversation.created_at), conversation.id);
        let text = crate::chat::export::markdown(conversation, messages);
        write(&conversations_dir.join(name), &text)?;
    }
    Ok(())
}

fn write(path: &Path, text: &str) -> Result<()> {
    let mut file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    file.write_all(text.as_bytes()).and_then(|()| file.sync_all()).map_err(|e| Error::io(path, e))
}

fn readme(c: &Contents) -> String {
    format!(
        "# {}\n\nExported from Doppel {} on {}.\n\n\
         - `persona.md`: who the twin is and how it speaks\n\
         - `verified-answers.md`: {} answer{} the owner approved\n\
         - `sources.csv`: {} source{} (origin, title, state, passages, added)\n\
         - `conversations/`: {} conversation{}, one Markdown file each, with citations\n",
        one_line(&c.twin.name),
        env!("CARGO_PKG_VERSION"),
        date(store::now_ms()),
        c.verified.len(),
        plural(c.verified.len()),
        c.sources.len(),
        plural(c.sources.len()),
        c.conversations.len(),
        plural(c.conversations.len()),
    )
}

fn persona(p: &Persona) -> String {
    format!(
        "# Persona\n\n## Name\n\n{}\n\n## Description\n\n{}\n\n## Voice\n\n{}\n\n\
         ## When the documents do not cover a question\n\n{}\n",
        or_none(&p.name),
        or_none(&p.description),
        or_none(&p.voice),
        or_none(&p.not_covered)
    )
}

fn verified(answers: &[VerifiedAnswer]) -> String {
    let mut out = String::from("# Verified answers\n");
    if answers.is_empty() {
        out.push_str("\nNone yet.\n");
    }
    for a in answers {
        out.push_str(&format!(
            "\n## {}\n\n{}\n\n_Approved on {}._\n",
            one_line(&a.question),
            a.answer.trim_end(),
            date(a.created_at)
        ));
    }
    out
}

fn sources_csv(sources: &[Source]) -> Result<String> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let failed =
        |e: csv::Error| Error::InvalidInput(format!("could not write the source list: {e}"));
    writer.write_record(["origin", "title", "state", "passages", "added"]).map_err(failed)?;
    for s in sources {
        writer
            .write_record([
                s.origin.as_deref().unwrap_or(""),
                s.title.as_str(),
                s.state.as_str(),
                &s.chunk_count.to_string(),
                &date(s.created_at),
            ])
            .map_err(failed)?;
    }
    let bytes = writer
        .into_inner()
        .map_err(|e| Error::InvalidInput(format!("could not write the source list: {e}")))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn or_none(text: &str) -> &str {
    if text.trim().is_empty() { "(none)" } else { text.trim() }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// A date in UTC, `YYYY-MM-DD`, from milliseconds since the epoch.
pub(crate) fn date(ms: Millis) -> String {
    // Howard Hinnant's civil_from_days.
    let z = ms.div_euclid(86_400_000) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_calendar_days() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(951_782_400_000), "2000-02-29");
        assert_eq!(date(1_767_225_599_000), "2025-12-31");
        assert_eq!(date(-86_400_000), "1969-12-31");
    }
}
