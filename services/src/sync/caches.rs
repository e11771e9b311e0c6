//! What `/sync` keeps between requests so that a listener woken by one new
//! event costs work proportional to that event: the recent-events log
//! (`recent`), each user's memberships until the log shows one changing,
//! what every listener of a room shares per position (which new events have
//! relations, the member events lazy loading adds, the room's members for
//! its summary and who shares a room for presence), the presence changes
//! of a range, each user's unread counts (`unread`), and how far each
//! device's to-device inbox is known empty.
//! Every entry is keyed by the positions it is for, or dropped when the log
//! shows it changed; every map is bounded.
//!
//! May call: `weft_storage`, `recent`, `shared`, `unread`.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
};

use ruma::{OwnedDeviceId, OwnedRoomId, OwnedUserId, RoomId, UserId};

use weft_storage::{PresenceRow, Storage, StorageError, StoredEvent};

use super::{recent::RecentEvents, shared::Shared};

/// Most users whose memberships, or devices whose inbox position, are kept.
const MAX_USERS: usize = 100_000;
/// Most entries of each per-position cache.
const PER_POSITION_ENTRIES: usize = 1024;

/// A user's current membership in every room they have one in: `(room, membership, ordering)`.
pub type Memberships = Vec<(OwnedRoomId, String, i64)>;

/// A value with the recent-events log's stamp when it was read.
type Stamped<T> = (Vec<i64>, Arc<T>);

/// A room's current members with their membership, in the order reached,
/// and whether it has a name or canonical alias: the shared part of a summary.
pub struct RoomMembers {
    pub memberships: Vec<(OwnedUserId, String)>,
    /// Those of `memberships` who are joined, for lookups by user.
    pub joined: HashSet<OwnedUserId>,
    pub named: bool,
}

pub struct SyncCaches {
    pub recent: RecentEvents,
    memberships: Mutex<HashMap<OwnedUserId, Stamped<Memberships>>>,
    /// `(room, after, upto)` → the events of that window that have relations.
    pub related: Shared<(OwnedRoomId, i64, i64), HashSet<String>>,
    /// `(room, position, users)` → those users' member events then.
    pub members_at: Shared<(OwnedRoomId, i64, Vec<String>), Vec<StoredEvent>>,
    /// `(room, position)` → its members then, for summaries and presence.
    pub room_members: Shared<(OwnedRoomId, i64), RoomMembers>,
    /// `(after, upto)` → the presence changes in that range of its stream.
    presence: Shared<(i64, i64), Vec<PresenceRow>>,
    /// Each user's unread counts per room, and the push actions that add to them.
    pub unread: super::unread::UnreadCounts,
    /// Per device: no message at or before this position waits in its inbox.
    inbox_empty_upto: Mutex<HashMap<OwnedUserId, HashMap<OwnedDeviceId, i64>>>,
}

impl Default for SyncCaches {
    fn default() -> Self {
        Self {
            recent: RecentEvents::default(),
            memberships: Mutex::default(),
            related: Shared::new(PER_POSITION_ENTRIES),
            members_at: Shared::new(PER_POSITION_ENTRIES),
            room_members: Shared::new(PER_POSITION_ENTRIES),
            presence: Shared::new(PER_POSITION_ENTRIES),
            unread: Default::default(),
            inbox_empty_upto: Mutex::default(),
        }
    }
}

impl std::fmt::Debug for SyncCaches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncCaches").finish_non_exhaustive()
    }
}

impl SyncCaches {
    /// The user's memberships: from memory while the log shows none of
    /// them changing since they were read (call `recent.catch_up` first).
    pub async fn memberships(&self, storage: &Storage, user_id: &UserId) -> Result<Arc<Memberships>, StorageError> {
        let held = self.memberships.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(user_id).cloned();
        if let Some((stamp, memberships)) = held
            && !self.recent.membership_may_have_changed(user_id, &stamp)
        {
            return Ok(memberships);
        }
        // Taken before reading: what is read is at least as new.
        let stamp = self.recent.stamp();
        let memberships = Arc::new(storage.memberships_of(user_id).await?);
        if let Some(stamp) = stamp {
            let mut held = self.memberships.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if held.len() >= MAX_USERS {
                held.clear();
            }
            held.insert(user_id.to_owned(), (stamp, memberships.clone()));
        }
        Ok(memberships)
    }

    /// Whether the device's inbox is known to hold nothing at or before `position`.
    pub fn inbox_empty_upto(&self, user_id: &UserId, device_id: &ruma::DeviceId, position: i64) -> bool {
        let known = self.inbox_empty_upto.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        known.get(user_id).and_then(|devices| devices.get(device_id)).is_some_and(|upto| *upto >= position)
    }

    /// Records that the device's inbox holds nothing at or before `position`.
    pub fn set_inbox_empty_upto(&self, user_id: &UserId, device_id: &ruma::DeviceId, position: i64) {
        let mut known = self.inbox_empty_upto.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Keys are copied only for a device not seen yet: this runs on every sync.
        if let Some(upto) = known.get_mut(user_id).and_then(|devices| devices.get_mut(device_id)) {
            *upto = (*upto).max(position);
            return;
        }
        if known.len() >= MAX_USERS {
            known.clear();
        }
        known.entry(user_id.to_owned()).or_default().insert(device_id.to_owned(), position);
    }

    /// The presence changes at positions in `(after, upto]`, read once for
    /// every listener.
    pub async fn presence_between(&self, storage: &Storage, after: i64, upto: i64) -> Result<Arc<Vec<PresenceRow>>, StorageError> {
        self.presence.get((after, upto), async || storage.presence_between(after, upto).await).await
    }

    /// The room's members as of `position`, read once for every listener.
    pub async fn room_members(&self, storage: &Storage, room_id: &RoomId, position: i64) -> Result<Arc<RoomMembers>, StorageError> {
        self.room_members
            .get((room_id.to_owned(), position), async || {
                let memberships = storage.memberships_in(room_id).await?;
                let named = super::summary::has_a_name(storage, room_id).await?;
                let joined = memberships.iter().filter(|(_, membership)| membership == "join").map(|(member, _)| member.clone()).collect();
                Ok(RoomMembers { memberships, joined, named })
            })
            .await
    }
}
