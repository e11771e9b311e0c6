//! Temporary until the push rules branch merges.
use ruma::{UserId, push::Ruleset};
use super::{Result, Storage};
impl Storage {
    pub async fn push_ruleset(&self, user_id: &UserId) -> Result<Ruleset> {
        Ok(Ruleset::server_default(user_id))
    }
    pub async fn push_rules_changed_since(&self, _user_id: &UserId, _after: i64) -> Result<bool> {
        Ok(false)
    }
}
