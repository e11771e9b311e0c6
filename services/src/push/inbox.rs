//! A pusher's notifications as the pool read them, handed to its worker so
//! that a pusher keeping up reads nothing of its own: the pool reads each
//! new range of the events stream once for every pusher
//! (`Storage::pushes_between`) instead of each woken pusher reading its
//! own. The database stays the queue: a worker whose position is before
//! what its inbox covers (it was behind, backing off, or the inbox
//! overflowed) reads its notifications there as before.
//!
//! The pool reads the events stream in contiguous ranges and offers each
//! range's notifications to the inboxes of every pusher it has a worker
//! for before it lets the workers read that far (`Shared::events_seen`), so
//! an inbox is exact from its `covered_from` to what the pool has looked
//! at: every notification of the pusher there that was unread when the pool
//! read it. A read receipt of the user, a range too large to hold, or too
//! many waiting notifications restart it (what came before is read from
//! the database, which leaves out the read ones).
//!
//! May call: nothing (plain data).

use std::collections::VecDeque;

use weft_storage::PendingPush;

/// The most notifications an inbox holds; beyond, it is emptied and the
/// worker reads the database (a pusher far behind costs no memory).
const CAPACITY: usize = 1000;

#[derive(Debug)]
pub struct Inbox {
    covered_from: i64,
    pushes: VecDeque<PendingPush>,
}

impl Inbox {
    /// An inbox covering what the pool reads after `position`.
    pub fn starting_at(position: i64) -> Self {
        Self { covered_from: position, pushes: VecDeque::new() }
    }

    /// The pool read a range up to `upto`; `pushes` are this pusher's
    /// notifications there, oldest first.
    pub fn offer(&mut self, upto: i64, pushes: impl IntoIterator<Item = PendingPush>) {
        self.pushes.extend(pushes);
        if self.pushes.len() > CAPACITY {
            self.restart_at(upto);
        }
    }

    /// Forgets everything up to `position`: the worker reads it from the
    /// database.
    pub fn restart_at(&mut self, position: i64) {
        self.pushes.clear();
        self.covered_from = position;
    }

    /// The notifications after `position` up to `upto` (at most what the
    /// pool has looked at), oldest first, or `None` when the inbox does not
    /// cover `position`. Those at or before `position` (delivered) are
    /// dropped.
    pub fn after(&mut self, position: i64, upto: i64) -> Option<Vec<PendingPush>> {
        while self.pushes.front().is_some_and(|push| push.stream_ordering <= position) {
            self.pushes.pop_front();
        }
        if position < self.covered_from {
            return None;
        }
        Some(self.pushes.iter().take_while(|push| push.stream_ordering <= upto).cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(at: i64) -> PendingPush {
        PendingPush { stream_ordering: at, event_id: format!("$e{at}"), room_id: "!r:x".into(), actions: serde_json::json!(["notify"]), ts: 0 }
    }

    fn orderings(pushes: Option<Vec<PendingPush>>) -> Option<Vec<i64>> {
        pushes.map(|pushes| pushes.iter().map(|push| push.stream_ordering).collect())
    }

    #[test]
    fn offers_answer_from_memory_up_to_the_position_asked() {
        let mut inbox = Inbox::starting_at(10);
        inbox.offer(15, [push(12), push(15)]);
        inbox.offer(20, []);
        inbox.offer(25, [push(21)]);
        assert_eq!(orderings(inbox.after(10, 25)), Some(vec![12, 15, 21]));
        assert_eq!(orderings(inbox.after(12, 20)), Some(vec![15]));
        assert_eq!(orderings(inbox.after(15, 25)), Some(vec![21]));
    }

    #[test]
    fn a_position_before_the_inbox_reads_the_database() {
        let mut inbox = Inbox::starting_at(10);
        inbox.offer(15, [push(12)]);
        assert_eq!(orderings(inbox.after(9, 15)), None);
    }

    #[test]
    fn an_overflowing_inbox_empties_and_covers_from_its_end() {
        let mut inbox = Inbox::starting_at(0);
        inbox.offer(2000, (1..=CAPACITY as i64 + 1).map(push));
        assert_eq!(orderings(inbox.after(0, 2000)), None);
        assert_eq!(orderings(inbox.after(2000, 2000)), Some(vec![]));
    }

    #[test]
    fn a_restart_covers_only_what_follows() {
        let mut inbox = Inbox::starting_at(0);
        inbox.offer(5, [push(3)]);
        inbox.restart_at(5);
        inbox.offer(8, [push(7)]);
        assert_eq!(orderings(inbox.after(0, 8)), None);
        assert_eq!(orderings(inbox.after(5, 8)), Some(vec![7]));
    }
}
