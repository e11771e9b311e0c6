//! The streams of the architecture page's section 3: their names, which
//! instances write each (`writers`, from `stream_writers`), and which events
//! persister owns a room (`shard`). Storage keeps their rows, replication
//! carries their positions, endpoint groups name the stream they write; all
//! of them share these names from here.
//!
//! May call: `config` (read).

mod writers;

pub use writers::{Writers, shard};

/// Every stream of the architecture page's section 3. Each but `Typing` (kept
/// in memory by its writer, as in Synapse) has rows with `stream_id` and
/// `instance_name`, a sequence (PostgreSQL) or counter row (SQLite), and its
/// writers' rows in `stream_positions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    Events,
    DeviceLists,
    Typing,
    Receipts,
    AccountData,
    Presence,
    ToDevice,
    PushRules,
}

impl Stream {
    pub const COUNT: usize = 8;
    pub const ALL: [Stream; Self::COUNT] =
        [Self::Events, Self::DeviceLists, Self::Typing, Self::Receipts, Self::AccountData, Self::Presence, Self::ToDevice, Self::PushRules];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Events => "events",
            Self::DeviceLists => "device_lists",
            Self::Typing => "typing",
            Self::Receipts => "receipts",
            Self::AccountData => "account_data",
            Self::Presence => "presence",
            Self::ToDevice => "to_device",
            Self::PushRules => "push_rules",
        }
    }

    /// Whether the stream's rows are in the database, so that a reader who
    /// knows a writer's position can read everything up to it there. Only
    /// `typing` is not: it lives in memory, and its rows carry its state.
    pub fn is_in_database(self) -> bool {
        self != Self::Typing
    }

    /// The stream's place in `ALL`, for per-stream arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}
