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
//! With each offer comes the pusher's row as the pool's read saw it: the
//! next pass takes it instead of reading the row again (a pusher deleted
//! before the read is offered nothing; one set again is seen by its newer
//! position). A pass with no row offered since the last reads its own.
//!
//! May call: nothing (plain data).

use std::collections::VecDeque;

use weft_storage::{PendingPush, StoredPusher};

/// The most notifications an inbox holds; beyond, it is emptied and the
/// worker reads the database (a pusher far behind costs no memory).
const CAPACITY: usize = 1000;

#[derive(Debug)]
pub struct Inbox {
    covered_from: i64,
    pushes: VecDeque<PendingPush>,
    /// The pusher's row as the last offer's read saw it, until a pass takes it.
    pusher: Option<StoredPusher>,
}

impl Inbox {
    /// An inbox covering what the pool reads after `position`.
    pub fn starting_at(position: i64) -> Self {
        Self { covered_from: position, pushes: VecDeque::new(), pusher: None }
    }

    /// The pool read a range up to `upto`; `pushes` are this pusher's
    /// notifications there, oldest first, and `pusher` its row as read with them.
    pub fn offer(&mut self, upto: i64, pusher: StoredPusher, pushes: impl IntoIterator<Item = PendingPush>) {
        self.pusher = Some(pusher);
        self.pushes.extend(pushes);
        if self.pushes.len() > CAPACITY {
            self.restart_at(upto);
        }
    }

    /// Forgets everything up to `position`: the worker reads it from the
    /// database.
    pub fn restart_at(&mut self, position: i64) {
        self.pushes.clear();
        self.pusher = None;
        self.covered_from = position;
    }

    /// The pusher's row offered since the last pass took one, when the
    /// inbox covers `position` (otherwise the pass reads the database).
    pub fn take_pusher(&mut self, position: i64) -> Option<StoredPusher> {
        if position < self.covered_from {
            return None;
        }
        self.pusher.take()
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

    fn pusher(last_stream_ordering: i64) -> StoredPusher {
        StoredPusher {
            user_id: ruma::owned_user_id!("@u:x"),
            app_id: "a".into(),
            pushkey: "k".into(),
            device_id: "D".into(),
            kind: "http".into(),
            app_display_name: String::new(),
            device_display_name: String::new(),
            profile_tag: None,
            lang: "en".into(),
            data: serde_json::Map::new(),
            created_ts: 0,
            last_stream_ordering,
            last_success_ts: None,
            failing_since_ts: None,
        }
    }

    fn orderings(pushes: Option<Vec<PendingPush>>) -> Option<Vec<i64>> {
        pushes.map(|pushes| pushes.iter().map(|push| push.stream_ordering).collect())
    }

    #[test]
    fn offers_answer_from_memory_up_to_the_position_asked() {
        let mut inbox = Inbox::starting_at(10);
        inbox.offer(15, pusher(10), [push(12), push(15)]);
        inbox.offer(20, pusher(10), []);
        inbox.offer(25, pusher(10), [push(21)]);
        assert_eq!(orderings(inbox.after(10, 25)), Some(vec![12, 15, 21]));
        assert_eq!(orderings(inbox.after(12, 20)), Some(vec![15]));
        assert_eq!(orderings(inbox.after(15, 25)), Some(vec![21]));
    }

    #[test]
    fn a_position_before_the_inbox_reads_the_database() {
        let mut inbox = Inbox::starting_at(10);
        inbox.offer(15, pusher(10), [push(12)]);
        assert_eq!(orderings(inbox.after(9, 15)), None);
    }

    #[test]
    fn an_overflowing_inbox_empties_and_covers_from_its_end() {
        let mut inbox = Inbox::starting_at(0);
        inbox.offer(2000, pusher(0), (1..=CAPACITY as i64 + 1).map(push));
        assert_eq!(orderings(inbox.after(0, 2000)), None);
        assert_eq!(orderings(inbox.after(2000, 2000)), Some(vec![]));
    }

    #[test]
    fn a_restart_covers_only_what_follows() {
        let mut inbox = Inbox::starting_at(0);
        inbox.offer(5, pusher(0), [push(3)]);
        inbox.restart_at(5);
        inbox.offer(8, pusher(0), [push(7)]);
        assert_eq!(orderings(inbox.after(0, 8)), None);
        assert_eq!(orderings(inbox.after(5, 8)), Some(vec![7]));
    }

    #[test]
    fn the_offered_row_is_taken_once_and_only_where_the_inbox_covers() {
        let mut inbox = Inbox::starting_at(10);
        assert_eq!(inbox.take_pusher(10), None);
        inbox.offer(15, pusher(10), [push(12)]);
        inbox.offer(20, pusher(12), [push(18)]);
        assert_eq!(inbox.take_pusher(9), None, "a position before the inbox reads the database");
        assert_eq!(inbox.take_pusher(10).map(|row| row.last_stream_ordering), Some(12), "the newest row");
        assert_eq!(inbox.take_pusher(10), None, "taken once");
        inbox.offer(25, pusher(18), [push(21)]);
        inbox.restart_at(25);
        assert_eq!(inbox.take_pusher(25), None, "a restart forgets the row");
    }
}
