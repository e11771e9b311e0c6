//! Devices and their access tokens. A device is created with its first token
//! (login or registration) and deleted with all of its tokens and pushers (logout, device
//! deletion, password change, deactivation); each creation and deletion is a
//! row on the `device_lists` stream, written in the same transaction.

use ruma::{DeviceId, OwnedDeviceId, OwnedUserId, UserId};
use sqlx::{AnyConnection, Row, any::AnyRow};

use super::{Result, Storage, StorageError, now_ms, positions::InFlightGuard, users::DeviceSelection};

/// A device as listed to its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub device_id: OwnedDeviceId,
    pub display_name: Option<String>,
    pub last_seen_ts: Option<i64>,
    pub last_seen_ip: Option<String>,
}

/// Who an access token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenOwner {
    pub user_id: OwnedUserId,
    pub device_id: OwnedDeviceId,
    pub admin: bool,
    pub deactivated: bool,
    pub shadow_banned: bool,
    pub last_seen_ts: Option<i64>,
    pub last_seen_ip: Option<String>,
}

/// A device (new or existing) and a new access token for it.
#[derive(Debug, Clone, Copy)]
pub struct NewSession<'a> {
    pub device_id: &'a DeviceId,
    /// Used only when the device is new.
    pub display_name: Option<&'a str>,
    /// SHA-256 of the access token; the token itself is never stored.
    pub token_hash: &'a str,
    pub ip: Option<&'a str>,
}

impl Storage {
    /// Logs a device in: creates it if it is new, and adds an access token.
    /// Returns whether the device was new.
    pub async fn open_session(&self, user_id: &UserId, session: NewSession<'_>) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let mut guards = Vec::new();
        let created = self.open_session_in(&mut tx, user_id, session, &mut guards).await?;
        tx.commit().await?;
        Ok(created)
    }

    pub(super) async fn open_session_in(
        &self,
        conn: &mut AnyConnection,
        user_id: &UserId,
        session: NewSession<'_>,
        guards: &mut Vec<InFlightGuard>,
    ) -> Result<bool> {
        let now = now_ms();
        let inserted = sqlx::query(
            "INSERT INTO devices (user_id, device_id, display_name, created_ts, last_seen_ts, last_seen_ip) \
             VALUES ($1, $2, $3, $4, $4, $5) ON CONFLICT (user_id, device_id) DO NOTHING",
        )
        .bind(user_id.as_str())
        .bind(session.device_id.as_str())
        .bind(session.display_name)
        .bind(now)
        .bind(session.ip)
        .execute(&mut *conn)
        .await?
        .rows_affected()
            == 1;
        if inserted {
            guards.push(self.record_device_change(conn, user_id.as_str(), session.device_id.as_str()).await?.1);
        }
        sqlx::query("INSERT INTO access_tokens (token_hash, user_id, device_id, created_ts) VALUES ($1, $2, $3, $4)")
            .bind(session.token_hash)
            .bind(user_id.as_str())
            .bind(session.device_id.as_str())
            .bind(now)
            .execute(&mut *conn)
            .await
            .map_err(StorageError::from_insert)?;
        Ok(inserted)
    }

    /// The owner of the token with this hash, if it is valid.
    pub async fn token_owner(&self, token_hash: &str) -> Result<Option<TokenOwner>> {
        let row = sqlx::query(
            "SELECT t.user_id, t.device_id, u.admin, u.deactivated, u.shadow_banned, d.last_seen_ts, d.last_seen_ip \
             FROM access_tokens t JOIN users u ON u.user_id = t.user_id \
             LEFT JOIN devices d ON d.user_id = t.user_id AND d.device_id = t.device_id \
             WHERE t.token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(TokenOwner {
                user_id: OwnedUserId::try_from(row.try_get::<String, _>("user_id")?).map_err(|e| StorageError::corrupt("access_tokens.user_id", e))?,
                device_id: row.try_get::<String, _>("device_id")?.into(),
                admin: super::flag(&row, "admin")?,
                deactivated: super::flag(&row, "deactivated")?,
                shadow_banned: super::flag(&row, "shadow_banned")?,
                last_seen_ts: row.try_get("last_seen_ts")?,
                last_seen_ip: row.try_get("last_seen_ip")?,
            })
        })
        .transpose()
    }

    /// Records that a device was just used from `ip`.
    pub async fn touch_device(&self, user_id: &UserId, device_id: &DeviceId, ip: &str) -> Result<()> {
        sqlx::query("UPDATE devices SET last_seen_ts = $1, last_seen_ip = $2 WHERE user_id = $3 AND device_id = $4")
            .bind(now_ms())
            .bind(ip)
            .bind(user_id.as_str())
            .bind(device_id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn devices(&self, user_id: &UserId) -> Result<Vec<Device>> {
        let rows = sqlx::query("SELECT device_id, display_name, last_seen_ts, last_seen_ip FROM devices WHERE user_id = $1 ORDER BY device_id")
            .bind(user_id.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(device_from_row).collect()
    }

    pub async fn device(&self, user_id: &UserId, device_id: &DeviceId) -> Result<Option<Device>> {
        let row = sqlx::query("SELECT device_id, display_name, last_seen_ts, last_seen_ip FROM devices WHERE user_id = $1 AND device_id = $2")
            .bind(user_id.as_str())
            .bind(device_id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(device_from_row).transpose()
    }

    /// Renames a device; `false` when the user has no such device.
    pub async fn set_device_display_name(&self, user_id: &UserId, device_id: &DeviceId, name: Option<&str>) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let updated = sqlx::query("UPDATE devices SET display_name = $1 WHERE user_id = $2 AND device_id = $3")
            .bind(name)
            .bind(user_id.as_str())
            .bind(device_id.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1;
        if updated {
            // Other users see display names in key queries: a device-list change.
            let (_, guard) = self.record_device_change(&mut tx, user_id.as_str(), device_id.as_str()).await?;
            tx.commit().await?;
            drop(guard);
            return Ok(true);
        }
        tx.commit().await?;
        Ok(updated)
    }

    /// Deletes the given devices of a user and all their tokens; returns how
    /// many devices existed. Unknown device ids are ignored.
    pub async fn delete_devices(&self, user_id: &UserId, device_ids: &[&DeviceId]) -> Result<u64> {
        let mut tx = self.begin_write().await?;
        let mut guards = Vec::new();
        let deleted = self.delete_devices_in(&mut tx, user_id, DeviceSelection::Only(device_ids), &mut guards).await?;
        tx.commit().await?;
        for device_id in device_ids {
            self.key_counts.forget(user_id.as_str(), Some(device_id.as_str()));
        }
        Ok(deleted)
    }

    /// Deletes every device of a user and all their tokens (`/logout/all`).
    pub async fn delete_all_devices(&self, user_id: &UserId) -> Result<u64> {
        let mut tx = self.begin_write().await?;
        let mut guards = Vec::new();
        let deleted = self.delete_devices_in(&mut tx, user_id, DeviceSelection::All, &mut guards).await?;
        tx.commit().await?;
        self.key_counts.forget(user_id.as_str(), None);
        Ok(deleted)
    }

    /// How many access tokens a user holds, over all devices.
    pub async fn access_token_count(&self, user_id: &UserId) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM access_tokens WHERE user_id = $1").bind(user_id.as_str()).fetch_one(&self.pool).await?)
    }

    pub(super) async fn delete_devices_in(
        &self,
        conn: &mut AnyConnection,
        user_id: &UserId,
        which: DeviceSelection<'_>,
        guards: &mut Vec<InFlightGuard>,
    ) -> Result<u64> {
        // Deleting tokens first makes the first statement a write, which takes
        // SQLite's write lock before anything is read.
        let owned: Vec<String> = match which {
            DeviceSelection::All | DeviceSelection::AllExcept(_) => {
                let keep = match which {
                    DeviceSelection::AllExcept(keep) => keep.as_str(),
                    _ => "",
                };
                sqlx::query("DELETE FROM access_tokens WHERE user_id = $1 AND device_id <> $2").bind(user_id.as_str()).bind(keep).execute(&mut *conn).await?;
                sqlx::query_scalar("DELETE FROM devices WHERE user_id = $1 AND device_id <> $2 RETURNING device_id")
                    .bind(user_id.as_str())
                    .bind(keep)
                    .fetch_all(&mut *conn)
                    .await?
            }
            DeviceSelection::Only(device_ids) => {
                let mut deleted = Vec::new();
                for device_id in device_ids {
                    sqlx::query("DELETE FROM access_tokens WHERE user_id = $1 AND device_id = $2")
                        .bind(user_id.as_str())
                        .bind(device_id.as_str())
                        .execute(&mut *conn)
                        .await?;
                    let gone: Option<String> = sqlx::query_scalar("DELETE FROM devices WHERE user_id = $1 AND device_id = $2 RETURNING device_id")
                        .bind(user_id.as_str())
                        .bind(device_id.as_str())
                        .fetch_optional(&mut *conn)
                        .await?;
                    deleted.extend(gone);
                }
                deleted
            }
        };
        self.delete_pushers_of_devices_in(conn, user_id, &owned).await?;
        for device_id in &owned {
            guards.push(self.record_device_change(conn, user_id.as_str(), device_id).await?.1);
            self.delete_device_data(conn, user_id.as_str(), device_id).await?;
        }
        Ok(owned.len() as u64)
    }
}

fn device_from_row(row: &AnyRow) -> Result<Device> {
    Ok(Device {
        device_id: row.try_get::<String, _>("device_id")?.into(),
        display_name: row.try_get("display_name")?,
        last_seen_ts: row.try_get("last_seen_ts")?,
        last_seen_ip: row.try_get("last_seen_ip")?,
    })
}

/// The lookup `weft router` makes for sticky `/sync`: the owner of a token,
/// deactivated or not (the instance that serves the request decides that).
impl weft_core::access_token::TokenOwners for Storage {
    fn user_of<'a>(&'a self, token_hash: &'a str) -> weft_core::access_token::BoxFuture<'a, Result<Option<String>, weft_core::access_token::LookupError>> {
        Box::pin(async move { Ok(self.token_owner(token_hash).await?.map(|owner| owner.user_id.to_string())) })
    }
}
