//! Splitting user ids, display names and search terms into words, and ranking
//! matches. Both sides use the same rules, so what the index stores is what a
//! query can find.
//!
//! A text is lower-cased and cut into chunks at whitespace, `@` and `:` (so a
//! user id gives its localpart and server name); punctuation is trimmed from
//! each chunk's ends. The index keeps every chunk and every alphanumeric run
//! inside it: `@alice.smith:example.org` is found by `alice.sm`, `smith` and
//! `example`. A query word matches a word it is a prefix of.
//!
//! Ranking follows Synapse's weights: a match in the localpart counts 1.0, in
//! the display name 0.9, in the server name 0.1; an exact word counts four
//! times a prefix (Synapse: three times the exact rank plus the prefix rank);
//! having a display name and an avatar each multiply by 1.2.

use std::collections::BTreeSet;

use ruma::UserId;

use weft_storage::DirectoryEntry;

/// Synapse's cap on the words of one query.
const MAX_QUERY_WORDS: usize = 10;

fn chunks(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| c.is_whitespace() || c == '@' || c == ':')
        .map(|chunk| chunk.trim_matches(|c: char| !c.is_alphanumeric()).to_lowercase())
        .filter(|chunk| !chunk.is_empty())
}

/// The words a text is found by.
fn text_words(text: &str) -> BTreeSet<String> {
    let mut words = BTreeSet::new();
    for chunk in chunks(text) {
        for run in chunk.split(|c: char| !c.is_alphanumeric()).filter(|run| !run.is_empty()) {
            words.insert(run.to_owned());
        }
        words.insert(chunk);
    }
    words
}

/// The words to index a user by.
pub fn index_words(user_id: &UserId, display_name: Option<&str>) -> Vec<String> {
    let mut words = text_words(user_id.localpart());
    words.extend(text_words(user_id.server_name().as_str()));
    words.extend(display_name.map(text_words).unwrap_or_default());
    words.into_iter().collect()
}

/// The words of a search term, at most ten; none for a blank term.
pub fn query_words(term: &str) -> Vec<String> {
    let mut seen = BTreeSet::new();
    chunks(term).filter(|word| seen.insert(word.clone())).take(MAX_QUERY_WORDS).collect()
}

/// How well an entry matches the query: higher is better.
fn score(entry: &DirectoryEntry, query: &[String]) -> f64 {
    let sources = [
        (1.0, text_words(entry.user_id.localpart())),
        (0.9, entry.display_name.as_deref().map(text_words).unwrap_or_default()),
        (0.1, text_words(entry.user_id.server_name().as_str())),
    ];
    let matched: f64 = query
        .iter()
        .map(|word| {
            sources
                .iter()
                .map(|(weight, words)| {
                    if words.contains(word) {
                        4.0 * weight
                    } else if words.iter().any(|candidate| candidate.starts_with(word.as_str())) {
                        *weight
                    } else {
                        0.0
                    }
                })
                .fold(0.0, f64::max)
        })
        .sum();
    let boost = |present: bool| if present { 1.2 } else { 1.0 };
    matched * boost(entry.display_name.is_some()) * boost(entry.avatar_url.is_some())
}

/// Matches best first: by score, then those with a display name, then with
/// an avatar (Synapse's tie-breaks), then by user id so the order is stable.
pub fn rank(entries: Vec<DirectoryEntry>, query: &[String]) -> Vec<DirectoryEntry> {
    let mut scored: Vec<(f64, DirectoryEntry)> = entries.into_iter().map(|entry| (score(&entry, query), entry)).collect();
    scored.sort_by(|(a_score, a), (b_score, b)| {
        b_score
            .total_cmp(a_score)
            .then(a.display_name.is_none().cmp(&b.display_name.is_none()))
            .then(a.avatar_url.is_none().cmp(&b.avatar_url.is_none()))
            .then(a.user_id.cmp(&b.user_id))
    });
    scored.into_iter().map(|(_, entry)| entry).collect()
}
