//! The grounded answer: composed from the best sentences of the retrieved passages, each cited,
//! so that every word of it can be checked in its source. It needs no language model, and it
//! cannot invent a fact.
//!
//! Every sentence of the first passages is scored against the question by meaning (the
//! embedder, with the passage's heading as context) and by words (the question's content words
//! it holds, its heading's counting half). The best sentence leads; others close to it follow;
//! a sentence that introduces what comes next (it ends with `:`) brings its next line, which in
//! documents is often the command. When no sentence comes near the question, the documents do
//! not cover it.

use super::check;
use super::prompt::Quoted;

/// The sentences of an answer, with the passages they come from.
#[derive(Debug, Clone, PartialEq)]
pub struct Grounded {
    /// The answer: sentences, each followed by its citation mark.
    pub text: String,
    /// The numbers of the passages cited, in the order of first use.
    pub cited: Vec<usize>,
    /// The best sentence's score, from 0 to 1.
    pub score: f32,
}

/// How many passages, best first, sentences are drawn from.
const PASSAGES: usize = 5;
/// Most sentences in an answer.
const MAX_SENTENCES: usize = 3;
/// Sentences scoring at least this share of the best one's score may join it.
const CLOSE_TO_BEST: f32 = 0.85;
/// Below this similarity by meaning (with the embedder), the documents do not cover the question.
/// (On 21 of bench/answers' questions with MiniLM, the uncovered came to at most 0.29 and the
/// covered to at least 0.36.)
pub const MIN_MEANING: f32 = 0.33;
/// Below this share of the question's content words (without the embedder), likewise.
pub const MIN_WORDS: f32 = 0.5;
/// Longest sentence considered, in bytes: longer ones are tables or run-on text.
const MAX_SENTENCE: usize = 600;
/// What a sentence stating the kind of fact a question asks for (a path, a number) gains.
const THING_BONUS: f32 = 0.1;

/// Words that say nothing of what a question is about.
const STOP_WORDS: &[&str] = &[
    "a", "about", "an", "and", "any", "are", "as", "at", "be", "can", "could", "did", "do", "does",
    "for", "from", "get", "had", "has", "have", "how", "i", "if", "in", "into", "is", "it", "its",
    "me", "my", "of", "on", "or", "should", "so", "some", "that", "the", "their", "them", "there",
    "this", "to", "was", "we", "were", "what", "when", "where", "which", "who", "why", "will",
    "with", "would", "you", "your", "one", "way", "want", "need", "use", "using", "make", "tell",
    "know", "there's", "what's", "i'm",
];

/// A word reduced to a rough stem, so that "packages" meets "package" and "running" "run".
fn stem(word: &str) -> String {
    let w = word.to_lowercase();
    for suffix in ["ing", "ed", "es", "s"] {
        if w.len() > suffix.len() + 3 && w.ends_with(suffix) {
            return w[..w.len() - suffix.len()].to_string();
        }
    }
    w
}

/// The content words of a text, stemmed.
pub fn content_words(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for word in text.split(|c: char| !(c.is_alphanumeric() || c == '\'')) {
        let word = word.trim_matches('\'');
        if word.chars().count() < 2 || STOP_WORDS.contains(&word.to_lowercase().as_str()) {
            continue;
        }
        let stemmed = stem(word);
        if !out.contains(&stemmed) {
            out.push(stemmed);
        }
    }
    out
}

struct Candidate<'a> {
    passage: usize,
    /// Its place in the passage.
    at: usize,
    text: &'a str,
    /// Long enough to answer (three words or more); shorter lines only come along as the
    /// command a sentence introduces.
    eligible: bool,
    words: f32,
    score: f32,
}

/// Composes the grounded answer to `question` from `passages` (best first). `meaning` gives the
/// similarity of the question to each text by meaning (`None` without an embedder). Returns
/// `None` when no sentence comes near the question.
pub fn compose(
    question: &str,
    passages: &[Quoted],
    meaning: &mut dyn FnMut(&[String]) -> Option<Vec<f32>>,
) -> Option<Grounded> {
    let asked = content_words(question);
    let mut candidates: Vec<Candidate> = Vec::new();
    let mut contexts: Vec<String> = Vec::new();
    for (rank, passage) in passages.iter().take(PASSAGES).enumerate() {
        let heading: &str =
            if passage.heading.is_empty() { &passage.title } else { &passage.heading };
        let heading_words = content_words(&format!("{} {heading}", passage.title));
        for (at, (_, sentence)) in check::sentences(&passage.text).into_iter().enumerate() {
            let count = sentence.split_whitespace().count();
            if count > 120 || sentence.len() > MAX_SENTENCE {
                continue;
            }
            let eligible = count >= 3 && sentence != heading;
            let own = content_words(sentence);
            let matched: f32 = asked
                .iter()
                .map(|w| {
                    if own.contains(w) {
                        1.0
                    } else if heading_words.contains(w) {
                        0.5
                    } else {
                        0.0
                    }
                })
                .sum();
            let words = if asked.is_empty() { 0.0 } else { matched / asked.len() as f32 };
            candidates.push(Candidate {
                passage: rank,
                at,
                text: sentence,
                eligible,
                words,
                score: words,
            });
            contexts.push(format!("{heading}: {sentence}"));
        }
    }
    if !candidates.iter().any(|c| c.eligible) || !names_found(question, passages) {
        return None;
    }
    let similar = meaning(&contexts).filter(|s| s.len() == candidates.len());
    let covered = match &similar {
        Some(scores) => {
            for (c, s) in candidates.iter_mut().zip(scores) {
                c.score = 0.65 * s.max(0.0) + 0.35 * c.words;
            }
            let eligible = candidates.iter().zip(scores).filter(|(c, _)| c.eligible);
            let best_meaning = eligible.map(|(_, s)| *s).fold(f32::MIN, f32::max);
            let best_words =
                candidates.iter().filter(|c| c.eligible).map(|c| c.words).fold(0.0, f32::max);
            best_meaning >= MIN_MEANING || best_words >= 0.99 && asked.len() >= 2
        }
        None => candidates.iter().any(|c| c.eligible && c.words >= MIN_WORDS),
    };
    if !covered {
        return None;
    }
    // Earlier passages win ties: retrieval ranked them first. A fragment (a list item that
    // goes on a sentence above it, starting in lower case) reads worse than a sentence. A
    // question that asks for a file or a number is answered by a sentence that states one.
    let wanted = wanted(question);
    let question_lower = question.to_lowercase();
    for c in &mut candidates {
        c.score -= 0.01 * c.passage as f32;
        if c.text.chars().next().is_some_and(char::is_lowercase) {
            c.score -= 0.05;
        }
        if wanted.is_some_and(|w| states(c.text, w, &question_lower)) {
            c.score += THING_BONUS;
        }
    }
    let mut order: Vec<usize> = (0..candidates.len()).filter(|&i| candidates[i].eligible).collect();
    order.sort_by(|&a, &b| candidates[b].score.total_cmp(&candidates[a].score));
    let best = candidates[order[0]].score;
    let mut chosen: Vec<usize> = Vec::new();
    for &i in &order {
        if chosen.len() == MAX_SENTENCES || candidates[i].score < best * CLOSE_TO_BEST {
            break;
        }
        let near_copy =
            chosen.iter().any(|&j| overlap(candidates[i].text, candidates[j].text) > 0.7);
        if !near_copy {
            chosen.push(i);
        }
    }
    // A sentence that refers back ("It sends…") brings the one it refers to, and a description
    // the signature it describes ("os.path.expanduser(path)"); a sentence that introduces the
    // next line brings it along.
    let mut with_next: Vec<usize> = Vec::new();
    for &i in &chosen {
        let previous = candidates
            .iter()
            .position(|c| c.passage == candidates[i].passage && c.at + 1 == candidates[i].at);
        if let Some(previous) = previous
            && (refers_back(candidates[i].text) || names_a_definition(candidates[previous].text))
            && !with_next.contains(&previous)
        {
            with_next.push(previous);
        }
        if with_next.contains(&i) {
            continue;
        }
        with_next.push(i);
        // The best sentence says what, its next one often says which (the command, the file).
        let vague_lead = with_next.len() == 1 && check::facts(candidates[i].text).is_empty();
        if vague_lead
            && let Some(next) = candidates
                .iter()
                .position(|c| c.passage == candidates[i].passage && c.at == candidates[i].at + 1)
            && !check::facts(candidates[next].text).is_empty()
        {
            with_next.push(next);
            continue;
        }
        if candidates[i].text.ends_with(':')
            && let Some(next) = candidates
                .iter()
                .position(|c| c.passage == candidates[i].passage && c.at == candidates[i].at + 1)
            && !with_next.contains(&next)
        {
            with_next.push(next);
        }
    }
    let mut text = String::new();
    let mut cited: Vec<usize> = Vec::new();
    for (k, &i) in with_next.iter().enumerate() {
        let c = &candidates[i];
        let number = passages[c.passage].number;
        let sentence = one_line(c.text).replace('¶', "");
        text.push_str(sentence.trim_end());
        // Sentences that follow each other in their passage share one citation, at the end.
        let next = with_next.get(k + 1).map(|&n| &candidates[n]);
        let runs_on = next.is_some_and(|n| n.passage == c.passage && n.at == c.at + 1);
        if !runs_on && !sentence.ends_with(&format!("[{number}]")) {
            text.push_str(&format!(" [{number}]"));
        }
        if next.is_some() {
            text.push_str(match (runs_on, names_a_definition(c.text)) {
                (true, true) => ": ",
                (true, false) if sentence.ends_with(':') => "\n",
                _ => " ",
            });
        }
        if !cited.contains(&number) {
            cited.push(number);
        }
    }
    let asks_when_or_where = question
        .split(|c: char| !c.is_alphabetic())
        .any(|w| w.eq_ignore_ascii_case("when") || w.eq_ignore_ascii_case("where"));
    if asks_when_or_where
        && let Some(lead) = lead(&passages[candidates[with_next[0]].passage].heading, &text)
    {
        text.insert_str(0, &format!("{lead}: "));
    }
    Some(Grounded { text, cited, score: best.max(0.0) })
}

/// The last part of a heading path, when the answer states no specific fact and the heading is
/// short and says what the answer does not (a journal's "May" above "Planted the tomatoes
/// out"): it leads the answer to a question of when or where, which headings often answer.
fn lead(heading: &str, sentence: &str) -> Option<String> {
    let last = heading.rsplit('›').next()?.trim();
    let words = content_words(last);
    let own = content_words(sentence);
    let short = !last.is_empty() && last.split_whitespace().count() <= 4;
    let vague = check::facts(sentence).is_empty();
    (vague && short && words.iter().any(|w| !own.contains(w))).then(|| last.to_string())
}

/// The kind of fact a question asks for, when its words say: a file or directory, or a number.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Wanted {
    Path,
    Number,
}

/// What a question asks for: "which file…", "where is the configuration…" want a path; "how
/// many…", "which port…" a number.
fn wanted(question: &str) -> Option<Wanted> {
    let words: Vec<String> = question
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    let has = |w: &str| words.iter().any(|x| x == w);
    let asks = has("which") || has("what") || has("where");
    let pairs =
        |a: &str, b: &[&str]| words.windows(2).any(|p| p[0] == a && b.contains(&p[1].as_str()));
    if pairs("how", &["many", "much"]) || asks && (has("port") || has("number")) {
        Some(Wanted::Number)
    } else if has("where") || asks && ["file", "directory", "folder", "path"].iter().any(|w| has(w))
    {
        Some(Wanted::Path)
    } else {
        None
    }
}

/// Whether a sentence states a fact of the kind asked for that the question does not hold.
fn states(sentence: &str, wanted: Wanted, question_lower: &str) -> bool {
    check::facts(sentence).iter().any(|fact| {
        let kind = match wanted {
            Wanted::Number => fact.chars().all(|c| c.is_ascii_digit()),
            Wanted::Path => {
                fact.starts_with('/') && fact.len() > 1
                    || fact.starts_with("~/")
                    || fact.rsplit_once('.').is_some_and(|(name, ext)| {
                        !name.is_empty()
                            && (1..=4).contains(&ext.len())
                            && ext.chars().all(|c| c.is_ascii_lowercase())
                    })
            }
        };
        kind && !question_lower.contains(&fact.to_lowercase())
    })
}

/// Whether the passages mention at least one of the things the question names ("PyTorch",
/// "Kubernetes", "NSA"), when it names any: passages about none of them do not answer it, however
/// close their meaning.
fn names_found(question: &str, passages: &[Quoted]) -> bool {
    let names: Vec<String> = check::facts(question)
        .iter()
        .flat_map(|f| f.split(['-', '/', '.']))
        .map(|part| part.trim_end_matches("'s").trim_end_matches("’s"))
        // Names, not acronyms: "LAN" or "USB" is said in many ways, "PyTorch" in one.
        .filter(|part| {
            part.chars().filter(|c| c.is_alphabetic()).count() >= 2
                && part.chars().next().is_some_and(char::is_uppercase)
                && part.chars().any(char::is_lowercase)
        })
        .map(str::to_lowercase)
        .collect();
    if names.is_empty() {
        return true;
    }
    // Names side by side are one name: "Unreal Engine" is not found in a passage about an engine.
    let question = question.to_lowercase();
    let mut phrases: Vec<String> = Vec::new();
    for name in names {
        match phrases.last_mut() {
            Some(last) if question.contains(&format!("{last} {name}")) => {
                last.push(' ');
                last.push_str(&name);
            }
            _ => phrases.push(name),
        }
    }
    let names = phrases;
    passages.iter().any(|p| {
        let text = format!("{} {} {}", p.title, p.heading, p.text).to_lowercase();
        names.iter().any(|n| text.contains(n.as_str()))
    })
}

/// Whether a line is the name of what the text after it describes: a short line with a call's
/// parentheses, as reference documentation puts a function's signature above its description.
fn names_a_definition(line: &str) -> bool {
    let line = line.trim_end_matches('¶').trim();
    line.split_whitespace().count() <= 8 && line.contains('(') && line.ends_with(')')
}

/// Whether a sentence begins by referring to what came before it.
fn refers_back(sentence: &str) -> bool {
    let first =
        sentence.split_whitespace().next().unwrap_or("").trim_matches(|c: char| !c.is_alphabetic());
    matches!(
        first.to_lowercase().as_str(),
        "it" | "its"
            | "this"
            | "these"
            | "that"
            | "those"
            | "they"
            | "their"
            | "he"
            | "she"
            | "such"
            | "then"
            | "there"
            | "here"
    )
}

/// Text on one line, its runs of white space one space each.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The share of the words of the shorter text that the other one has.
fn overlap(a: &str, b: &str) -> f32 {
    let (a, b) = (content_words(a), content_words(b));
    let shorter = a.len().min(b.len());
    if shorter == 0 {
        return 0.0;
    }
    a.iter().filter(|w| b.contains(w)).count() as f32 / shorter as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quoted(number: usize, heading: &str, text: &str) -> Quoted {
        let location = format!("{heading}, lines 1–9");
        Quoted {
            number,
            title: "Notes".into(),
            location,
            heading: heading.into(),
            text: text.into(),
        }
    }

    fn no_embedder(_: &[String]) -> Option<Vec<f32>> {
        None
    }

    #[test]
    fn the_sentence_that_answers_leads_with_its_citation() {
        let passages = [
            quoted(
                1,
                "Garden",
                "The shed needs paint. I planted the tomatoes in May, by the fence.",
            ),
            quoted(2, "Boat", "The boat was repaired in June."),
        ];
        let answer =
            compose("When did I plant the tomatoes?", &passages, &mut no_embedder).unwrap();
        assert_eq!(answer.text, "I planted the tomatoes in May, by the fence. [1]");
        assert_eq!(answer.cited, vec![1]);
    }

    #[test]
    fn a_sentence_ending_in_a_colon_brings_its_command() {
        let passages = [quoted(
            3,
            "Scheduling",
            "To run a command once at a later time, type:\n$ at now + 1 day\nThen type the command.",
        )];
        let answer =
            compose("how do I run something once later", &passages, &mut no_embedder).unwrap();
        assert!(
            answer
                .text
                .starts_with("To run a command once at a later time, type:\n$ at now + 1 day [3]"),
            "{}",
            answer.text
        );
    }

    #[test]
    fn a_short_heading_that_says_what_the_sentence_does_not_leads_the_answer() {
        let passages = [quoted(
            1,
            "Garden journal › May",
            "Planted the tomatoes out after the last frost, forty\ncentimetres apart.",
        )];
        let answer =
            compose("When did I plant the tomatoes?", &passages, &mut no_embedder).unwrap();
        assert_eq!(
            answer.text,
            "May: Planted the tomatoes out after the last frost, forty centimetres apart. [1]"
        );
    }

    #[test]
    fn a_sentence_that_refers_back_brings_the_one_before() {
        let passages = [quoted(
            1,
            "Supervision",
            "The logcheck program monitors log files every hour. It sends unusual log messages \
             in emails to the administrator.",
        )];
        let answer =
            compose("which tool emails unusual log messages", &passages, &mut no_embedder).unwrap();
        assert_eq!(
            answer.text,
            "The logcheck program monitors log files every hour. It sends unusual log messages \
             in emails to the administrator. [1]"
        );
    }

    #[test]
    fn a_description_brings_the_signature_it_describes() {
        let passages = [quoted(
            1,
            "os.path",
            "os.path.expanduser(path)¶\nOn Unix and Windows, return the argument with an initial \
             component of ~ replaced by that user's home directory.",
        )];
        let asked = "turn a path starting with ~ into the home directory";
        let answer = compose(asked, &passages, &mut no_embedder).unwrap();
        assert!(answer.text.starts_with("os.path.expanduser(path): On Unix"), "{}", answer.text);
    }

    #[test]
    fn a_question_asking_for_a_thing_gets_the_sentence_that_names_it() {
        let passages = [quoted(
            1,
            "Software RAID",
            "The state of a RAID array changes during a reconstruction. \
             The /proc/mdstat file shows the state of each RAID array.",
        )];
        let mut near = |texts: &[String]| {
            Some(
                texts
                    .iter()
                    .map(|t| if t.contains("reconstruction") { 0.55 } else { 0.5 })
                    .collect(),
            )
        };
        let asked = "Where can I check the state of a RAID array?";
        let answer = compose(asked, &passages, &mut near).unwrap();
        assert!(answer.text.starts_with("The /proc/mdstat file"), "{}", answer.text);
        // A question asking how things work gets no such push.
        let asked = "How does the state of a RAID array change?";
        let answer = compose(asked, &passages, &mut near).unwrap();
        assert!(answer.text.starts_with("The state of a RAID array"), "{}", answer.text);
    }

    #[test]
    fn a_question_about_a_thing_no_passage_names_is_not_covered() {
        let passages =
            [quoted(1, "Tracing", "The trace function is called for every line of code.")];
        let mut near = |texts: &[String]| Some(vec![0.7; texts.len()]);
        let asked = "How do I turn on hardware ray tracing in Unreal Engine 5?";
        assert!(compose(asked, &passages, &mut near).is_none());
        // Names side by side are one name, not found in a passage that has one of its words.
        let engine = [quoted(1, "Tracing", "The trace engine is called for every line of code.")];
        assert!(compose(asked, &engine, &mut near).is_none());
        assert!(compose("How is the trace function called?", &passages, &mut near).is_some());
    }

    #[test]
    fn nothing_near_the_question_is_not_covered() {
        let passages = [quoted(1, "Boat", "The boat was repaired in June.")];
        assert!(compose("What is a good lasagna recipe?", &passages, &mut no_embedder).is_none());
        // By meaning too: an embedder that finds nothing close.
        let mut far = |texts: &[String]| Some(vec![0.1; texts.len()]);
        assert!(compose("When was the boat fixed?", &passages, &mut far).is_none());
        let mut near = |texts: &[String]| Some(vec![0.7; texts.len()]);
        assert!(compose("When was the boat fixed?", &passages, &mut near).is_some());
    }
}
