//! Who writes each stream, from `stream_writers` (an absent entry means
//! `main`), and which events persister owns a room: the sha256 of the room
//! id, read as a little-endian integer, modulo the number of persisters, in
//! configured order, exactly as Synapse assigns rooms.

use sha2::{Digest, Sha256};

use super::Stream;
use crate::config::Config;

#[derive(Debug, Clone)]
pub struct Writers {
    instance: String,
    streams: [Vec<String>; Stream::COUNT],
}

impl Writers {
    pub fn from_config(config: &Config) -> Self {
        Self { instance: config.instance_name().to_owned(), streams: Stream::ALL.map(|stream| config.stream_writers.writers_of(stream.as_str())) }
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The writers of `stream`, in configured order (never empty).
    pub fn of(&self, stream: Stream) -> &[String] {
        &self.streams[stream.index()]
    }

    /// Whether this instance writes `stream`.
    pub fn writes(&self, stream: Stream) -> bool {
        self.of(stream).contains(&self.instance)
    }

    pub fn index_of(&self, stream: Stream, instance: &str) -> Option<usize> {
        self.of(stream).iter().position(|writer| writer == instance)
    }

    /// The writer of a stream that has one; for a multi-writer stream, this
    /// instance when it is one of them, otherwise the first.
    pub fn writer_of(&self, stream: Stream) -> &str {
        let writers = self.of(stream);
        if writers.contains(&self.instance) { &self.instance } else { &writers[0] }
    }

    /// The index, in `stream_writers.events`, of the persister of `room_id`.
    pub fn events_writer_index(&self, room_id: &str) -> usize {
        shard(room_id, self.of(Stream::Events).len())
    }

    /// The instance that persists `room_id`'s events.
    pub fn events_writer(&self, room_id: &str) -> &str {
        &self.of(Stream::Events)[self.events_writer_index(room_id)]
    }

    pub fn persists_room(&self, room_id: &str) -> bool {
        self.events_writer(room_id) == self.instance
    }
}

/// sha256 of `key` as a little-endian 256-bit integer, modulo `count`.
pub fn shard(key: &str, count: usize) -> usize {
    if count <= 1 {
        return 0;
    }
    let digest = Sha256::digest(key.as_bytes());
    // Horner's rule from the most significant byte, which is the last one.
    digest.iter().rev().fold(0u128, |remainder, byte| (remainder * 256 + u128::from(*byte)) % count as u128) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_as_synapse_does() {
        // Python: int.from_bytes(hashlib.sha256(b"!room:example.org").digest(), "little") % n
        let expected = [(2, 1), (3, 0), (7, 0), (10, 5)];
        for (count, index) in expected {
            assert_eq!(shard("!room:example.org", count), index, "modulo {count}");
        }
        assert_eq!(shard("!anything:x", 1), 0);
        let spread: std::collections::HashSet<usize> = (0..64).map(|i| shard(&format!("!r{i}:x"), 2)).collect();
        assert_eq!(spread.len(), 2);
    }
}
