//! The replication commands and their wire form: one UTF-8 line per
//! command, `<COMMAND> <arguments>`, as Synapse writes them on Redis.
//!
//! Weft's rows are small JSON arrays naming what changed (an event's room
//! and id, a room's typists); the stream's rows themselves are read from the
//! database. The last element of every RDATA row is the publisher's clock in
//! microseconds, from which readers measure replication lag.

use std::fmt;

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// A writer persisted rows of a stream up to `token`.
    Rdata { stream: String, instance: String, token: i64, row: Value },
    /// A writer advanced from `prev` to `new` with no rows in between.
    Position { stream: String, instance: String, prev: i64, new: i64 },
    /// Every writer should announce its positions again.
    Replicate,
    /// A user started (or stopped) syncing on the process `process_id`.
    UserSync { process_id: String, user_id: String, device_id: Option<String>, syncing: bool, last_sync_ms: i64 },
    /// The process `process_id` stopped: none of its users sync there any more.
    ClearUserSync { process_id: String },
    /// A federation sender acknowledged the `federation` stream up to `token`.
    FederationAck { instance: String, token: i64 },
    /// A remote server is reachable again.
    RemoteServerUp { server_name: String },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed replication command: {0}")]
pub struct MalformedCommand(String);

impl Command {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Rdata { .. } => "RDATA",
            Self::Position { .. } => "POSITION",
            Self::Replicate => "REPLICATE",
            Self::UserSync { .. } => "USER_SYNC",
            Self::ClearUserSync { .. } => "CLEAR_USER_SYNC",
            Self::FederationAck { .. } => "FEDERATION_ACK",
            Self::RemoteServerUp { .. } => "REMOTE_SERVER_UP",
        }
    }

    pub fn parse(line: &str) -> Result<Self, MalformedCommand> {
        let malformed = || MalformedCommand(line.chars().take(200).collect());
        let (name, rest) = line.split_once(' ').unwrap_or((line, ""));
        let int = |text: &str| text.parse::<i64>().map_err(|_| malformed());
        match name {
            "RDATA" => {
                let mut parts = rest.splitn(4, ' ');
                let (Some(stream), Some(instance), Some(token), Some(row)) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
                    return Err(malformed());
                };
                let row = serde_json::from_str(row).map_err(|_| malformed())?;
                Ok(Self::Rdata { stream: stream.into(), instance: instance.into(), token: int(token)?, row })
            }
            "POSITION" => match rest.split(' ').collect::<Vec<_>>()[..] {
                [stream, instance, prev, new] => Ok(Self::Position { stream: stream.into(), instance: instance.into(), prev: int(prev)?, new: int(new)? }),
                _ => Err(malformed()),
            },
            "REPLICATE" => Ok(Self::Replicate),
            "USER_SYNC" => match rest.split(' ').collect::<Vec<_>>()[..] {
                [process_id, user_id, device_id, state, last_sync_ms] => Ok(Self::UserSync {
                    process_id: process_id.into(),
                    user_id: user_id.into(),
                    device_id: (device_id != "None").then(|| device_id.into()),
                    syncing: match state {
                        "start" => true,
                        "end" => false,
                        _ => return Err(malformed()),
                    },
                    last_sync_ms: int(last_sync_ms)?,
                }),
                _ => Err(malformed()),
            },
            "CLEAR_USER_SYNC" if !rest.is_empty() => Ok(Self::ClearUserSync { process_id: rest.into() }),
            "FEDERATION_ACK" => match rest.split(' ').collect::<Vec<_>>()[..] {
                [instance, token] => Ok(Self::FederationAck { instance: instance.into(), token: int(token)? }),
                _ => Err(malformed()),
            },
            "REMOTE_SERVER_UP" if !rest.is_empty() => Ok(Self::RemoteServerUp { server_name: rest.into() }),
            _ => Err(malformed()),
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())?;
        match self {
            Self::Rdata { stream, instance, token, row } => write!(f, " {stream} {instance} {token} {row}"),
            Self::Position { stream, instance, prev, new } => write!(f, " {stream} {instance} {prev} {new}"),
            Self::Replicate => Ok(()),
            Self::UserSync { process_id, user_id, device_id, syncing, last_sync_ms } => {
                let state = if *syncing { "start" } else { "end" };
                write!(f, " {process_id} {user_id} {} {state} {last_sync_ms}", device_id.as_deref().unwrap_or("None"))
            }
            Self::ClearUserSync { process_id } => write!(f, " {process_id}"),
            Self::FederationAck { instance, token } => write!(f, " {instance} {token}"),
            Self::RemoteServerUp { server_name } => write!(f, " {server_name}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn every_command_survives_the_wire() {
        let commands = [
            Command::Rdata { stream: "events".into(), instance: "persister1".into(), token: 42, row: json!(["!a:x", "$e", 1]) },
            Command::Position { stream: "typing".into(), instance: "main".into(), prev: 3, new: 9 },
            Command::Replicate,
            Command::UserSync { process_id: "abcde".into(), user_id: "@u:x".into(), device_id: None, syncing: true, last_sync_ms: 5 },
            Command::UserSync { process_id: "abcde".into(), user_id: "@u:x".into(), device_id: Some("D".into()), syncing: false, last_sync_ms: 5 },
            Command::ClearUserSync { process_id: "abcde".into() },
            Command::FederationAck { instance: "fed1".into(), token: 7 },
            Command::RemoteServerUp { server_name: "example.org".into() },
        ];
        for command in commands {
            let line = command.to_string();
            assert!(!line.contains('\n'));
            assert_eq!(Command::parse(&line), Ok(command), "{line}");
        }
    }

    #[test]
    fn garbage_is_refused() {
        for line in ["", "RDATA events main", "POSITION a b c d", "USER_SYNC a b c maybe 1", "NOPE x", "RDATA s i 1 {not json"] {
            assert!(Command::parse(line).is_err(), "{line}");
        }
    }
}
