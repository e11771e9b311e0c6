//! The `push_rules` stream: each user's push rules as one ruma `Ruleset`,
//! stored whole (server-default rules included, with the user's enabled state
//! and actions for them) and brought up to date with the server defaults of
//! this build whenever it is read. A change rewrites the row at a new stream id.
//!
//! Changes are read-modify-write: `change_push_ruleset` applies a closure to
//! the current rules and writes the result only if nobody changed them in the
//! meantime (compare-and-set on the row's stream id, retried), so two
//! concurrent changes never lose one another.

use ruma::{UserId, push::Ruleset};
use sqlx::Row;

use super::{Result, Storage, StorageError, Stream};

/// Compare-and-set retries before giving up on a hotly contended user.
const MAX_ATTEMPTS: usize = 8;

impl Storage {
    /// The user's push rules: the stored ones updated with
    /// `Ruleset::server_default(user_id)`, or the server default when none are stored.
    pub async fn push_ruleset(&self, user_id: &UserId) -> Result<Ruleset> {
        Ok(self.stored_ruleset(&mut *self.pool.acquire().await?, user_id).await?.0)
    }

    /// Whether the user's push rules changed at a stream id after `after`.
    pub async fn push_rules_changed_since(&self, user_id: &UserId, after: i64) -> Result<bool> {
        let found: Option<i64> = sqlx::query_scalar("SELECT stream_id FROM push_rules WHERE user_id = $1 AND stream_id > $2")
            .bind(user_id.as_str())
            .bind(after)
            .fetch_optional(&self.pool)
            .await?;
        Ok(found.is_some())
    }

    /// Applies `change` to the user's current push rules and stores the
    /// result at a new stream id, which it returns. When `change` refuses,
    /// its error comes back as the inner `Err` and nothing is written.
    /// `change` may run more than once (after a concurrent change).
    pub async fn change_push_ruleset<E>(&self, user_id: &UserId, change: impl Fn(&mut Ruleset) -> Result<(), E>) -> Result<Result<i64, E>> {
        // A refusal is found before a stream id is taken: on SQLite a rolled-back
        // id would be handed out again after readers had been told it was done.
        let (mut preview, _) = self.stored_ruleset(&mut *self.pool.acquire().await?, user_id).await?;
        if let Err(refusal) = change(&mut preview) {
            return Ok(Err(refusal));
        }
        for _ in 0..MAX_ATTEMPTS {
            let mut tx = self.begin_write().await?;
            // First, so that on SQLite the transaction holds the write lock from here on.
            let (stream_id, guard) = self.next_stream_id(&mut tx, Stream::PushRules).await?;
            let (mut ruleset, version) = self.stored_ruleset(&mut tx, user_id).await?;
            if let Err(refusal) = change(&mut ruleset) {
                // Changed under us into something `change` refuses: commit the
                // unused id (a gap is harmless) and refuse.
                tx.commit().await?;
                drop(guard);
                return Ok(Err(refusal));
            }
            let json = serde_json::to_string(&ruleset).map_err(|e| StorageError::corrupt("push_rules.rules_json", e))?;
            let written = match version {
                Some(version) => sqlx::query("UPDATE push_rules SET rules_json = $1, stream_id = $2, instance_name = $3 WHERE user_id = $4 AND stream_id = $5")
                    .bind(&json)
                    .bind(stream_id)
                    .bind(&self.instance_name)
                    .bind(user_id.as_str())
                    .bind(version),
                None => sqlx::query(
                    "INSERT INTO push_rules (user_id, rules_json, stream_id, instance_name) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (user_id) DO NOTHING",
                )
                .bind(user_id.as_str())
                .bind(&json)
                .bind(stream_id)
                .bind(&self.instance_name),
            }
            .execute(&mut *tx)
            .await?
            .rows_affected();
            tx.commit().await?;
            drop(guard);
            if written == 1 {
                return Ok(Ok(stream_id));
            }
            // Another writer got in between reading and writing (PostgreSQL only); read again.
        }
        // Contended past every retry.
        Err(StorageError::Conflict)
    }

    /// The user's rules brought up to date, and the stream id of the stored row (if any).
    async fn stored_ruleset(&self, conn: &mut sqlx::AnyConnection, user_id: &UserId) -> Result<(Ruleset, Option<i64>)> {
        let row = sqlx::query("SELECT rules_json, stream_id FROM push_rules WHERE user_id = $1").bind(user_id.as_str()).fetch_optional(conn).await?;
        let Some(row) = row else {
            return Ok((Ruleset::server_default(user_id), None));
        };
        let mut ruleset: Ruleset =
            serde_json::from_str(&row.try_get::<String, _>("rules_json")?).map_err(|e| StorageError::corrupt("push_rules.rules_json", e))?;
        ruleset.update_with_server_default(Ruleset::server_default(user_id));
        Ok((ruleset, Some(row.try_get("stream_id")?)))
    }
}
