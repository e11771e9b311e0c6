//! Sync and pagination tokens: one position per stream, in a form every
//! process understands. A multi-writer stream's position is a minimum that
//! every writer has reached plus the writers that are ahead of it, written
//! as Synapse writes them: `m{min}~{writer index}.{position}...`, the index
//! being the writer's place in `stream_writers`.
//!
//! `s{events}_{device_lists}_{typing}_{receipts}_{account_data}_{presence}_{to_device}_{push_rules}`,
//! e.g. `s42_7_0_3_9_1_0_2` or `sm40~1.42_7_0_3_9_1_0_2`. Later streams append
//! fields; a token with fewer fields reads the missing ones as 0.

use std::fmt;

use weft_storage::Stream;

use super::notifier::Positions;

/// A position in a stream with possibly several writers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MultiWriterPosition {
    /// Every writer has persisted everything up to here.
    pub min: i64,
    /// `(writer index, position)` for writers ahead of `min`.
    pub ahead: Vec<(usize, i64)>,
}

impl MultiWriterPosition {
    pub fn at(position: i64) -> Self {
        Self { min: position, ahead: Vec::new() }
    }

    /// The position of the writer at `index`: its own when it is ahead, else the minimum.
    pub fn of_writer(&self, index: usize) -> i64 {
        self.ahead.iter().find(|(writer, _)| *writer == index).map_or(self.min, |(_, position)| *position)
    }

    /// The furthest position any writer has reached.
    pub fn max(&self) -> i64 {
        self.ahead.iter().map(|(_, position)| *position).fold(self.min, i64::max)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamToken {
    pub events: MultiWriterPosition,
    pub device_lists: i64,
    pub typing: i64,
    pub receipts: MultiWriterPosition,
    pub account_data: i64,
    pub presence: i64,
    pub to_device: i64,
    pub push_rules: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid token: {0}")]
pub struct InvalidToken(pub String);

impl StreamToken {
    /// A token for an events position alone (pagination tokens).
    pub fn events_at(position: i64) -> Self {
        Self { events: MultiWriterPosition::at(position), ..Self::default() }
    }

    pub fn from_positions(positions: &Positions) -> Self {
        Self {
            events: MultiWriterPosition { min: positions.get(Stream::Events), ahead: positions.events_ahead() },
            device_lists: positions.get(Stream::DeviceLists),
            typing: positions.get(Stream::Typing),
            receipts: MultiWriterPosition::at(positions.get(Stream::Receipts)),
            account_data: positions.get(Stream::AccountData),
            presence: positions.get(Stream::Presence),
            to_device: positions.get(Stream::ToDevice),
            push_rules: positions.get(Stream::PushRules),
        }
    }

    /// The position on `stream` everything before which the token's holder
    /// has seen (a multi-writer stream's minimum).
    pub fn get(&self, stream: Stream) -> i64 {
        match stream {
            Stream::Events => self.events.min,
            Stream::DeviceLists => self.device_lists,
            Stream::Typing => self.typing,
            Stream::Receipts => self.receipts.min,
            Stream::AccountData => self.account_data,
            Stream::Presence => self.presence,
            Stream::ToDevice => self.to_device,
            Stream::PushRules => self.push_rules,
        }
    }

    pub fn parse(text: &str) -> Result<Self, InvalidToken> {
        let invalid = || InvalidToken(text.to_owned());
        let fields: Vec<&str> = text.strip_prefix('s').ok_or_else(invalid)?.split('_').collect();
        if fields.len() > 8 {
            return Err(invalid());
        }
        let multi = |index: usize| match fields.get(index) {
            None => Ok(MultiWriterPosition::default()),
            Some(field) => parse_multi_writer(field, false).ok_or_else(invalid),
        };
        let single = |index: usize| match fields.get(index) {
            None => Ok(0),
            Some(field) => field.parse::<i64>().ok().filter(|position| *position >= 0).ok_or_else(invalid),
        };
        // Pagination tokens reach below 0 into history fetched from other
        // servers (backfilled events have negative orderings).
        let events = match fields.first() {
            None => MultiWriterPosition::default(),
            Some(field) => parse_multi_writer(field, true).ok_or_else(invalid)?,
        };
        Ok(Self {
            events,
            device_lists: single(1)?,
            typing: single(2)?,
            receipts: multi(3)?,
            account_data: single(4)?,
            presence: single(5)?,
            to_device: single(6)?,
            push_rules: single(7)?,
        })
    }
}

/// `negative`: a plain position may be below 0 (the events stream).
fn parse_multi_writer(field: &str, negative: bool) -> Option<MultiWriterPosition> {
    match field.strip_prefix('m') {
        None => {
            let position: i64 = field.parse().ok()?;
            (negative || position >= 0).then(|| MultiWriterPosition::at(position))
        }
        Some(rest) => {
            let mut parts = rest.split('~');
            let min: i64 = parts.next()?.parse().ok()?;
            let ahead = parts
                .map(|part| {
                    let (index, position) = part.split_once('.')?;
                    Some((index.parse().ok()?, position.parse().ok()?))
                })
                .collect::<Option<Vec<(usize, i64)>>>()?;
            (min >= 0 && ahead.iter().all(|(_, position)| *position > min)).then_some(MultiWriterPosition { min, ahead })
        }
    }
}

impl fmt::Display for MultiWriterPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.ahead.is_empty() {
            return write!(f, "{}", self.min);
        }
        write!(f, "m{}", self.min)?;
        for (index, position) in &self.ahead {
            write!(f, "~{index}.{position}")?;
        }
        Ok(())
    }
}

impl fmt::Display for StreamToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "s{}_{}_{}_{}_{}_{}_{}_{}",
            self.events, self.device_lists, self.typing, self.receipts, self.account_data, self.presence, self.to_device, self.push_rules
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pagination_token_may_reach_below_zero_into_backfilled_history() {
        let token = StreamToken::events_at(-12);
        assert_eq!(token.to_string(), "s-12_0_0_0_0_0_0_0");
        assert_eq!(StreamToken::parse(&token.to_string()), Ok(token));
        assert!(StreamToken::parse("s5_0_0_-1").is_err(), "other streams stay at or above 0");
        assert!(StreamToken::parse("sm-1~1.4").is_err(), "a multi-writer minimum stays at or above 0");
    }
}
