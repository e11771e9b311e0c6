//! Endpoint groups, as the worker documentation groups endpoints. Every route
//! is declared with its group; metrics are labelled by it, and `weft router`
//! keys its table by it (`instance_map.<name>.serves` lists group names).
//!
//! `InitialSync`, `Federation`, `FederationTransactions` and `Media`
//! name groups of the worker document whose endpoints Weft does not all serve
//! yet; `weft_api::route_list` declares their paths from ruma's types so that the
//! router can send them to the right instance the day they are.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EndpointGroup {
    /// `/versions`, `/capabilities` and other reads any worker serves.
    ClientReads,
    /// `/register`, `/register/available`.
    Registration,
    /// `/login`, `/logout`.
    Login,
    /// `/account/*`: whoami, password, deactivation.
    Account,
    /// `/devices`, `/delete_devices`.
    Devices,
    /// `/sync` (sticky by user behind the router).
    Sync,
    /// `createRoom`.
    RoomCreation,
    /// `join`, `leave`, `invite`, `kick`, `ban`, `unban`, `forget`.
    Membership,
    /// `send`, state `PUT`: writes that go to the room's event persister.
    EventSending,
    /// `/rooms/{roomId}/messages` (sticky by room behind the router).
    RoomMessages,
    /// Alias and directory listing changes.
    Directory,
    /// Profile changes (`PUT`/`DELETE /profile/...`), which send member events.
    Profile,
    /// `/room_keys/*`: server-side key backup.
    KeyBackup,
    /// `/pushers`, `/pushers/set`.
    Pushers,
    /// Push rule changes (`PUT`/`DELETE /pushrules/...`): the `push_rules` stream writer.
    PushRules,
    /// `/_matrix/key/v2/server`.
    ServerKeys,
    /// `/rooms/{roomId}/typing`: to the `typing` stream's writer.
    Typing,
    /// Receipts and read markers: to a `receipts` stream writer.
    Receipts,
    /// Account data and tags: to the `account_data` stream's writer.
    AccountData,
    /// `/sendToDevice`: to the `to_device` stream's writer.
    ToDevice,
    /// `/presence`: to the `presence` stream's writer.
    Presence,
    /// `/keys/*` writes: uploads, claims, cross-signing, signatures.
    Keys,
    /// `/_synapse/admin/*`.
    Admin,
    /// `/sync` without `since` when `router.initial_sync_separately` is set.
    InitialSync,
    /// Inbound federation requests other than transactions (`/state`, `/backfill`, `/make_join`, ...).
    Federation,
    /// Inbound federation transactions, `PUT /send/{txnId}` (sticky by origin behind the router).
    FederationTransactions,
    /// The media repository: `/_matrix/media/*`, `/_matrix/client/v1/media/*`, federation media.
    Media,
    /// Single sign-on: the redirect, the provider's callback, the username
    /// picker. Any instance serving it may take any step of a login.
    Sso,
}

impl EndpointGroup {
    /// The stream whose writer must make this group's writes: workers
    /// forward such requests to it, and the router prefers it when no
    /// instance `serves` the group.
    pub fn written_stream(self) -> Option<crate::streams::Stream> {
        use crate::streams::Stream;
        Some(match self {
            Self::Typing => Stream::Typing,
            Self::ToDevice => Stream::ToDevice,
            Self::AccountData => Stream::AccountData,
            Self::Receipts => Stream::Receipts,
            Self::Presence => Stream::Presence,
            Self::PushRules => Stream::PushRules,
            // Devices come and go with logins, registrations, logouts and
            // deactivations; keys and signatures change device lists.
            Self::Devices | Self::Keys | Self::Login | Self::Registration | Self::Account => Stream::DeviceLists,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientReads => "client_reads",
            Self::Registration => "registration",
            Self::Login => "login",
            Self::Account => "account",
            Self::Devices => "devices",
            Self::Sync => "sync",
            Self::RoomCreation => "room_creation",
            Self::Membership => "membership",
            Self::EventSending => "event_sending",
            Self::RoomMessages => "room_messages",
            Self::Profile => "profile",
            Self::PushRules => "push_rules",
            Self::Directory => "directory",
            Self::KeyBackup => "key_backup",
            Self::Pushers => "pushers",
            Self::ServerKeys => "server_keys",
            Self::Typing => "typing",
            Self::Receipts => "receipts",
            Self::AccountData => "account_data",
            Self::ToDevice => "to_device",
            Self::Presence => "presence",
            Self::Keys => "keys",
            Self::Admin => "admin",
            Self::InitialSync => "initial_sync",
            Self::Federation => "federation",
            Self::FederationTransactions => "federation_transactions",
            Self::Media => "media",
            Self::Sso => "sso",
        }
    }

    /// Every group, in declaration order.
    pub const ALL: [Self; 28] = [
        Self::ClientReads,
        Self::Registration,
        Self::Login,
        Self::Account,
        Self::Devices,
        Self::Sync,
        Self::RoomCreation,
        Self::Membership,
        Self::EventSending,
        Self::RoomMessages,
        Self::Directory,
        Self::Profile,
        Self::KeyBackup,
        Self::Pushers,
        Self::PushRules,
        Self::ServerKeys,
        Self::Typing,
        Self::Receipts,
        Self::AccountData,
        Self::ToDevice,
        Self::Presence,
        Self::Keys,
        Self::Admin,
        Self::InitialSync,
        Self::Federation,
        Self::FederationTransactions,
        Self::Media,
        Self::Sso,
    ];

    /// The group named `name` (as `as_str` spells it).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|group| group.as_str() == name)
    }
}
