//! Sync and pagination tokens: one position per stream, in a form every
//! process understands. A multi-writer stream's position is a minimum that
//! every writer has reached plus the writers that are ahead of it, written
//! as Synapse writes them: `m{min}~{writer index}.{position}...`, the index
//! being the writer's place in `stream_writers`.
//!
//! `s{events}_{device_lists}`, e.g. `s42_7` or `sm40~1.42_7`. Later streams
//! append fields; a token with fewer fields reads the missing ones as 0.

use std::fmt;

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

    /// The furthest position any writer has reached.
    pub fn max(&self) -> i64 {
        self.ahead.iter().map(|(_, position)| *position).fold(self.min, i64::max)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamToken {
    pub events: MultiWriterPosition,
    pub device_lists: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid token: {0}")]
pub struct InvalidToken(pub String);

impl StreamToken {
    pub fn parse(text: &str) -> Result<Self, InvalidToken> {
        let invalid = || InvalidToken(text.to_owned());
        let body = text.strip_prefix('s').ok_or_else(invalid)?;
        let mut fields = body.split('_');
        let events = parse_multi_writer(fields.next().ok_or_else(invalid)?).ok_or_else(invalid)?;
        let device_lists = match fields.next() {
            Some(field) => field.parse().map_err(|_| invalid())?,
            None => 0,
        };
        if device_lists < 0 {
            return Err(invalid());
        }
        Ok(Self { events, device_lists })
    }
}

fn parse_multi_writer(field: &str) -> Option<MultiWriterPosition> {
    match field.strip_prefix('m') {
        None => {
            let position: i64 = field.parse().ok()?;
            (position >= 0).then(|| MultiWriterPosition::at(position))
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
        write!(f, "s{}_{}", self.events, self.device_lists)
    }
}
