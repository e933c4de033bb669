//! Checking an answer against its sources, and keeping prompt markup out of it.
//!
//! - [`sentences`] cuts text into sentences (and lines, which in documents are often commands or
//!   list items).
//! - [`facts`] picks out a sentence's specific facts: numbers, paths, dotted or underscored names,
//!   calls, quoted code and capitalised names inside the sentence.
//! - [`check`] marks each sentence of an answer whose facts appear in none of its cited passages
//!   (nor in the question), and [`verdict`] says whether the answer can be shown: not when most
//!   of it is unsupported, nor when it declines although passages were found.
//! - [`Cleaner`] filters a streamed answer: prompt delimiters, chat-template tokens and role
//!   names never reach the reader, and a model that starts repeating itself or writing the
//!   next turn is stopped.
//!
//! All of it is plain text matching, cheap enough to run on every answer as it completes.

/// One sentence of an answer found to state facts that its sources do not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported {
    /// The sentence, as in the answer.
    pub sentence: String,
    /// The facts it states that no cited passage holds.
    pub facts: Vec<String>,
}

/// Why a generated answer is not shown, and the grounded answer is shown instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// At least half of its sentences state facts its passages do not.
    Unsupported,
    /// It declined to answer although passages were found.
    Refused,
    /// It said nothing.
    Empty,
}

impl Rejection {
    /// The reason, as told to the reader.
    pub fn reason(self) -> &'static str {
        match self {
            Rejection::Unsupported => {
                "the model's answer stated facts that its passages do not, so the passages' own \
                 sentences are shown instead"
            }
            Rejection::Refused => {
                "the model declined to answer although passages were found, so their most \
                 relevant sentences are shown instead"
            }
            Rejection::Empty => {
                "the model gave no answer, so the passages' most relevant sentences are shown \
                 instead"
            }
        }
    }
}

/// The sentences of a text, trimmed, each with its byte range. A sentence ends at `.`, `!` or
/// `?` followed by a space (not inside a number, a path or an abbreviation such as "e.g."), and
/// at a line break that is not wrapped prose (see [`hard_break`]): in documents a line is often
/// a command or a list item.
pub fn sentences(text: &str) -> Vec<(std::ops::Range<usize>, &str)> {
    let mut out = Vec::new();
    let mut start = 0;
    let bytes = text.as_bytes();
    let push = |from: usize, to: usize, out: &mut Vec<_>| {
        let piece = &text[from..to];
        let trimmed = piece.trim();
        if trimmed.chars().any(char::is_alphanumeric) {
            let lead = piece.len() - piece.trim_start().len();
            out.push((from + lead..from + lead + trimmed.len(), trimmed));
        }
    };
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'\n' && hard_break(&text[start..i], &text[i + 1..]) {
            push(start, i, &mut out);
            start = i + 1;
        } else if matches!(b, b'.' | b'!' | b'?')
            && bytes.get(i + 1).is_none_or(|n| n.is_ascii_whitespace())
            && !abbreviation(&text[start..=i])
        {
            // A citation right after the full stop belongs to the sentence: "May. [1]".
            let mut end = i + 1;
            let rest = &text[end..];
            let skipped = rest.len() - rest.trim_start_matches([' ', '\t']).len();
            if rest[skipped..].starts_with('[') {
                let marks = citation_marks_len(&rest[skipped..]);
                if marks > 0 {
                    end += skipped + marks;
                }
            }
            push(start, end, &mut out);
            start = end;
            i = end;
            continue;
        }
        i += 1;
    }
    push(start, text.len(), &mut out);
    out
}

/// Whether a line break ends a sentence: at a blank line, after a stop or a colon, before a
/// line that starts like a command, a list item or a heading, and after a short line (a
/// heading, a command). Otherwise it is wrapped prose, and the sentence goes on.
fn hard_break(before: &str, after: &str) -> bool {
    let line = before.rsplit('\n').next().unwrap_or(before).trim();
    let next = after.split('\n').next().unwrap_or("").trim();
    if next.is_empty() || line.is_empty() {
        return true;
    }
    let ends = line.ends_with(['.', ':', '!', '?', ';']) || line.ends_with(']');
    let mut chars = next.chars();
    let first = chars.next().unwrap_or(' ');
    let listed = "$#-*>|`•".contains(first)
        || first.is_ascii_digit()
            && next.trim_start_matches(|c: char| c.is_ascii_digit()).starts_with(['.', ')']);
    let short = line.chars().count() < 40 && first.is_uppercase();
    ends || listed || short
}

/// The length of a run of citation marks such as `[1]` or `[1][2]` at the start of `text`.
fn citation_marks_len(text: &str) -> usize {
    let mut at = 0;
    while text[at..].starts_with('[') {
        let inner = &text[at + 1..];
        let digits = inner.len() - inner.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 || !inner[digits..].starts_with(']') {
            break;
        }
        at += digits + 2;
    }
    at
}

/// Whether a full stop ends an abbreviation rather than the sentence.
fn abbreviation(sentence: &str) -> bool {
    let last = sentence.rsplit(char::is_whitespace).next().unwrap_or("").to_lowercase();
    matches!(
        last.as_str(),
        "e.g." | "i.e." | "etc." | "vs." | "cf." | "mr." | "mrs." | "dr." | "no." | "fig." | "p."
    )
}

/// Words that start with a capital for reasons other than being a name.
const NOT_NAMES: &[&str] = &[
    "i",
    "i'm",
    "i've",
    "i'd",
    "i'll",
    "ok",
    "yes",
    "no",
    "the",
    "a",
    "an",
    "it",
    "this",
    "that",
    "these",
    "those",
    "my",
    "you",
    "your",
    "we",
    "our",
    "they",
    "he",
    "she",
    "if",
    "in",
    "on",
    "at",
    "for",
    "to",
    "and",
    "but",
    "or",
    "so",
    "as",
    "then",
    "when",
    "what",
    "which",
    "who",
    "how",
    "why",
    "where",
    "there",
    "here",
    "note",
    "see",
    "also",
    "however",
    "first",
    "second",
    "finally",
    "from",
    "with",
    "by",
    "of",
    "is",
    "are",
    "use",
    "run",
    "according",
];

/// The specific facts a sentence states: the things an invented answer gets wrong. Citation
/// marks are not facts.
pub fn facts(sentence: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut push = |fact: &str| {
        let fact = fact.trim_matches(|c: char| ",;:!?\"'()[]{}<>".contains(c) || c == '.');
        if !fact.is_empty() && !out.iter().any(|f| f == fact) {
            out.push(fact.to_string());
        }
    };
    // Quoted code is one fact, whatever it holds.
    let mut rest = sentence;
    let mut plain = String::with_capacity(sentence.len());
    while let Some(open) = rest.find('`') {
        plain.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('`') {
            Some(close) => {
                push(&after[..close]);
                plain.push(' ');
                rest = &after[close + 1..];
            }
            None => {
                rest = after;
            }
        }
    }
    plain.push_str(rest);
    let mut first_word = true;
    for token in plain.split_whitespace() {
        let word = token.trim_matches(|c: char| ",;:!?\"'()[]{}<>*".contains(c));
        let word = word.trim_end_matches('.');
        let is_mark = token.starts_with('[') && citation_marks_len(token) > 0;
        if word.is_empty() || is_mark {
            continue;
        }
        let at_start = std::mem::replace(&mut first_word, false);
        let has_digit = word.chars().any(|c| c.is_ascii_digit());
        let technical = word.contains('/')
            || word.contains('_')
            || word.contains("::")
            || word.contains('(')
            || word.contains('=')
            || word.starts_with('-') && word.len() > 1
            || word.contains('.')
                && word.chars().all(|c| c.is_alphanumeric() || "._-/".contains(c));
        let name = !at_start
            && word.chars().next().is_some_and(char::is_uppercase)
            && word.chars().filter(|c| c.is_alphabetic()).count() > 1
            && !NOT_NAMES.contains(&word.to_lowercase().as_str());
        if has_digit || technical || name {
            push(word);
        }
    }
    out
}

/// Whether `fact` is stated in `text` (case and surrounding punctuation aside).
fn stated_in(fact: &str, text_lower: &str) -> bool {
    text_lower.contains(&fact.to_lowercase())
}

/// The sentences of `answer` that state a fact found in none of `passages` nor in `question`.
/// Sentences without specific facts cannot be checked this way and are not marked.
pub fn check(answer: &str, question: &str, passages: &[&str]) -> Vec<Unsupported> {
    let sources: Vec<String> = passages
        .iter()
        .map(|p| p.to_lowercase())
        .chain(std::iter::once(question.to_lowercase()))
        .collect();
    sentences(answer)
        .into_iter()
        .filter_map(|(_, sentence)| {
            let missing: Vec<String> = facts(sentence)
                .into_iter()
                .filter(|f| !sources.iter().any(|s| stated_in(f, s)))
                .collect();
            (!missing.is_empty())
                .then(|| Unsupported { sentence: sentence.to_string(), facts: missing })
        })
        .collect()
}

/// Phrases of an answer that declines, lowercased.
const REFUSALS: &[&str] = &[
    "not able to access",
    "unable to access",
    "can't access",
    "cannot access",
    "don't have access",
    "do not have access",
    "i'm not able to",
    "i am not able to",
    "i can't help",
    "i cannot help",
    "i don't have information",
    "i do not have information",
    "no information about",
    "as an ai",
    "i don't know",
    "i do not know",
];

/// Whether an answer declines (with or without the persona's "not covered" words).
pub fn refuses(answer: &str, not_covered: &str) -> bool {
    let lower = answer.to_lowercase().replace('’', "'");
    let not_covered = not_covered.trim().trim_end_matches('.').to_lowercase();
    (!not_covered.is_empty() && lower.contains(&not_covered))
        || REFUSALS.iter().any(|r| lower.contains(r))
}

/// Whether a generated answer may be shown as it is, given what [`check`] found in it.
pub fn verdict(answer: &str, unsupported: &[Unsupported], not_covered: &str) -> Option<Rejection> {
    let total = sentences(answer).len();
    if total == 0 {
        return Some(Rejection::Empty);
    }
    if refuses(answer, not_covered) {
        return Some(Rejection::Refused);
    }
    (unsupported.len() * 2 >= total).then_some(Rejection::Unsupported)
}

/// Markup that never belongs in an answer: our passage delimiters and the chat-template tokens
/// of the common families. Matched case-insensitively at a `<` or `[`.
const MARKUP_PREFIXES: &[&str] = &[
    "<passage",
    "</passage",
    "<|",
    "<start_of_turn",
    "<end_of_turn",
    "</s>",
    "<s>",
    "<<sys>>",
    "<</sys>>",
    "[inst]",
    "[/inst]",
    "<｜",
];

/// How the stream of an answer goes on after a piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Keep generating.
    More,
    /// Stop: the model repeats itself or began another turn.
    Stop,
}

/// Filters a streamed answer. Text that may be the start of markup is held back until it is
/// known not to be; markup is dropped; a role name at the start is dropped; the answer ends
/// where the model starts a new turn or repeats itself.
#[derive(Debug, Default)]
pub struct Cleaner {
    /// Text received but not yet passed on.
    held: String,
    /// Everything passed on so far.
    shown: String,
    started: bool,
    stopped: bool,
}

/// Longest markup held back while waiting to see whether it is markup.
const MAX_HELD: usize = 48;

impl Cleaner {
    /// A cleaner for a new answer.
    pub fn new() -> Cleaner {
        Cleaner::default()
    }

    /// The answer as cleaned so far.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// Takes a piece of the stream; returns the text to pass on and whether to go on.
    pub fn push(&mut self, piece: &str) -> (String, Flow) {
        if self.stopped {
            return (String::new(), Flow::Stop);
        }
        self.held.push_str(piece);
        let mut out = String::new();
        loop {
            let Some(at) = self.held.find(['<', '[']) else {
                out.push_str(&self.held);
                self.held.clear();
                break;
            };
            out.push_str(&self.held[..at]);
            let rest = self.held[at..].to_string();
            match markup_at(&rest) {
                Markup::Is(len) => {
                    self.held = rest[len..].to_string();
                    // A new turn's marker ends the answer.
                    if starts_with_ci(&rest, "<|im_start")
                        || starts_with_ci(&rest, "<start_of_turn")
                    {
                        self.held.clear();
                        self.stopped = true;
                        break;
                    }
                }
                Markup::Maybe if rest.len() < MAX_HELD => {
                    self.held = rest;
                    break;
                }
                _ => {
                    let first = rest.chars().next().map_or(1, char::len_utf8);
                    out.push_str(&rest[..first]);
                    self.held = rest[first..].to_string();
                }
            }
        }
        let out = self.emit(out);
        (out, if self.stopped { Flow::Stop } else { Flow::More })
    }

    /// The rest of the answer once the stream has ended.
    pub fn finish(&mut self) -> String {
        let held = std::mem::take(&mut self.held);
        if self.stopped {
            return String::new();
        }
        // Held text that never became markup is text, unless it is a cut-off delimiter.
        let text = if matches!(markup_at(&held), Markup::Maybe) { String::new() } else { held };
        self.emit(text)
    }

    /// Passes text on after the role-name and repetition checks.
    fn emit(&mut self, mut text: String) -> String {
        if !self.started {
            let trimmed = text.trim_start();
            if trimmed.is_empty() {
                return String::new();
            }
            for role in ["assistant:", "assistant\n", "doppel:", "answer:"] {
                if starts_with_ci(trimmed, role) {
                    text = trimmed[role.len()..].trim_start().to_string();
                    break;
                }
            }
            if text.is_empty() {
                return text;
            }
            self.started = true;
        }
        // A line that starts the asker's turn ends the answer.
        let mut candidate = self.shown.clone();
        candidate.push_str(&text);
        if let Some(turn) = next_turn_at(&candidate, self.shown.len()) {
            self.stopped = true;
            let keep = turn.saturating_sub(self.shown.len());
            text.truncate(keep.min(text.len()));
            candidate.truncate(turn);
        }
        if let Some(cut) = repetition_at(&candidate) {
            self.stopped = true;
            let keep = cut.saturating_sub(self.shown.len());
            text.truncate(floor_char(&text, keep));
        }
        self.shown.push_str(&text);
        text
    }
}

fn floor_char(text: &str, at: usize) -> usize {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

enum Markup {
    /// Markup of this many bytes.
    Is(usize),
    /// Could become markup with more text.
    Maybe,
    /// Not markup.
    Not,
}

/// Whether `text` starts with `prefix`, ASCII case aside (byte lengths never change).
fn starts_with_ci(text: &str, prefix: &str) -> bool {
    text.len() >= prefix.len()
        && text.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

fn markup_at(text: &str) -> Markup {
    for prefix in MARKUP_PREFIXES {
        if starts_with_ci(text, prefix) {
            let close = if prefix.starts_with('[') { ']' } else { '>' };
            // `<|…|>` and `<｜…｜>` tokens, and tags with attributes, end at their closer.
            return match text.find(close) {
                Some(end) if !text[..end].contains('\n') => Markup::Is(end + close.len_utf8()),
                Some(_) => Markup::Not,
                None if text.contains('\n') => Markup::Not,
                None => Markup::Maybe,
            };
        }
        if text.len() < prefix.len() && starts_with_ci(prefix, text) {
            return Markup::Maybe;
        }
    }
    Markup::Not
}

/// Where the model began the asker's next turn ("User:", "Question:"), at or after `from`.
fn next_turn_at(text: &str, from: usize) -> Option<usize> {
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        let start = at;
        at += line.len();
        if at <= from.saturating_sub(16) {
            continue;
        }
        let lower = line.trim_start().to_lowercase();
        if start > 0
            && ["user:", "question:", "human:", "### user"].iter().any(|t| lower.starts_with(t))
        {
            return Some(start);
        }
    }
    None
}

/// Where a loop began, if the text ends in one: the same sentence a third time, or the same
/// run of words three times over.
fn repetition_at(text: &str) -> Option<usize> {
    let found = sentences(text);
    // A sentence is complete once another one follows it.
    if found.len() >= 3 {
        let complete = &found[..found.len() - 1];
        let (last_range, last) = complete.last()?;
        let norm = |s: &str| s.to_lowercase().split_whitespace().collect::<Vec<_>>().join(" ");
        let last = norm(last);
        if last.len() >= 12 {
            let same = complete.iter().filter(|(_, s)| norm(s) == last).count();
            if same >= 3 {
                return Some(last_range.start);
            }
        }
    }
    let words: Vec<(usize, &str)> = text
        .split_whitespace()
        .map(|w| (w.as_ptr() as usize - text.as_ptr() as usize, w))
        .collect();
    let n = words.len();
    for period in 1..=12 {
        if n < 3 * period || 3 * period < 6 {
            continue;
        }
        let block = |k: usize| &words[n - k * period..n - (k - 1) * period];
        let same = |a: &[(usize, &str)], b: &[(usize, &str)]| {
            a.iter().zip(b).all(|(x, y)| x.1.eq_ignore_ascii_case(y.1))
        };
        if same(block(1), block(2)) && same(block(2), block(3)) {
            // Keep the first time it was said.
            return Some(words[n - 2 * period].0);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(text: &str) -> Vec<&str> {
        sentences(text).into_iter().map(|(_, s)| s).collect()
    }

    #[test]
    fn sentences_end_at_stops_and_lines_but_not_in_names_or_abbreviations() {
        assert_eq!(
            texts("Use os.path.join, e.g. for paths. It is in 3.11! Then [1]\n$ apt update"),
            vec!["Use os.path.join, e.g. for paths.", "It is in 3.11!", "Then [1]", "$ apt update"]
        );
        // Wrapped prose goes on across its line breaks.
        assert_eq!(
            texts("Planted the tomatoes out after the last frost, forty\ncentimetres apart."),
            vec!["Planted the tomatoes out after the last frost, forty\ncentimetres apart."]
        );
        assert_eq!(
            texts("I planted them in May. [1] Peppers came later."),
            vec!["I planted them in May. [1]", "Peppers came later."]
        );
    }

    #[test]
    fn facts_are_numbers_paths_code_and_names_but_not_citations() {
        let found =
            facts("The profiles live in /etc/apparmor.d, said Alice [2] in 2019 via `aa-status`.");
        assert_eq!(found, vec!["aa-status", "/etc/apparmor.d", "Alice", "2019"]);
        assert!(facts("It is warm and I like it [1].").is_empty());
        assert_eq!(facts("Call shutil.copy2() first."), vec!["shutil.copy2"]);
    }

    #[test]
    fn an_invented_path_is_unsupported_and_a_quoted_one_is_not() {
        let passage = "AppArmor profiles are stored in /etc/apparmor.d/ as plain text.";
        let invented = "The profiles are in a file named /etc/macs.d/1042 [1].";
        let found = check(invented, "Where are the profiles?", &[passage]);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].facts, vec!["/etc/macs.d/1042"]);
        assert!(check("They are in /etc/apparmor.d [1].", "Where?", &[passage]).is_empty());
        // A name the asker used is not invented.
        assert!(check("Yes, Bob planted them.", "Did Bob plant them?", &[passage]).is_empty());
    }

    #[test]
    fn verdict_rejects_mostly_unsupported_refusing_and_empty_answers() {
        let not_covered = "My documents don't cover that.";
        let answer = "It was published in 1984. I'm not able to access your document.";
        assert_eq!(verdict(answer, &[], not_covered), Some(Rejection::Refused));
        let unsupported = check("It was in 1984.", "When?", &["in May"]);
        assert_eq!(
            verdict("It was in 1984.", &unsupported, not_covered),
            Some(Rejection::Unsupported)
        );
        assert_eq!(verdict("  ", &[], not_covered), Some(Rejection::Empty));
        assert_eq!(verdict("I planted them in May [1].", &[], not_covered), None);
    }

    fn clean(pieces: &[&str]) -> (String, Flow) {
        let mut cleaner = Cleaner::new();
        let mut out = String::new();
        let mut flow = Flow::More;
        for piece in pieces {
            let (text, f) = cleaner.push(piece);
            out.push_str(&text);
            flow = f;
            if f == Flow::Stop {
                break;
            }
        }
        out.push_str(&cleaner.finish());
        (out, flow)
    }

    #[test]
    fn delimiters_and_template_tokens_never_reach_the_reader_even_split_across_pieces() {
        let (out, _) = clean(&["In May [1].", "</pas", "sage>", " <|im_end|>"]);
        assert_eq!(out.trim(), "In May [1].");
        let (out, _) = clean(&["Assistant: ", "Yes, a <b>bold</b> plan", " [INST] and [2]"]);
        assert_eq!(out, "Yes, a <b>bold</b> plan  and [2]");
        // A cut-off delimiter at the very end is dropped too.
        assert_eq!(clean(&["Done. </passa"]).0.trim(), "Done.");
    }

    #[test]
    fn a_new_turn_or_a_loop_stops_the_answer() {
        let (out, flow) = clean(&["In May.", "<|im_start|>user\nAnd peppers?"]);
        assert_eq!((out.as_str(), flow), ("In May.", Flow::Stop));
        let (out, flow) = clean(&["In May.\n", "User: and peppers?"]);
        assert_eq!((out.trim(), flow), ("In May.", Flow::Stop));
        let looping = ["It was May. ", "It was May. ", "It was May. ", "It was May. ", "More."];
        let (out, flow) = clean(&looping);
        assert_eq!(flow, Flow::Stop);
        assert_eq!(out.matches("It was May.").count(), 2);
        let (out, flow) = clean(&["no no no no no no no no no no"]);
        assert_eq!(flow, Flow::Stop);
        assert!(out.split_whitespace().count() < 10, "{out}");
    }
}
