//! `POST /user_directory/search`: users the searcher shares a room with or
//! who are in a public room, matched by word prefixes of their display name
//! and user id (see `weft_services::user_directory`). As in Synapse, `limit` is capped
//! at 50, and spam-checker plugins may hide results after the limit is applied.

use ruma::{OwnedMxcUri, api::client::user_directory::search_users};

use weft_services::plugins::spam::UserProfile;
use weft_services::services::AppState;

use crate::{error::ApiResult, ruma_route::Ruma};

/// Synapse's cap on `limit`.
const MAX_LIMIT: usize = 50;

pub async fn search(state: AppState, request: Ruma<search_users::v3::Request>) -> ApiResult<search_users::v3::Response> {
    let sender = request.sender()?;
    let body = &request.body;
    let limit = usize::try_from(u64::from(body.limit)).unwrap_or(MAX_LIMIT).min(MAX_LIMIT);
    let (entries, limited) = weft_services::user_directory::search(&state.storage, &sender.user_id, &body.search_term, limit).await?;
    let mut results = Vec::with_capacity(entries.len());
    for entry in entries {
        let profile = UserProfile { user_id: entry.user_id, display_name: entry.display_name, avatar_url: entry.avatar_url };
        if state.spam_checker.check_username_for_spam(&profile, &sender.user_id).await {
            continue;
        }
        let mut user = search_users::v3::User::new(profile.user_id);
        user.display_name = profile.display_name;
        user.avatar_url = profile.avatar_url.map(OwnedMxcUri::from);
        results.push(user);
    }
    Ok(search_users::v3::Response::new(results, limited))
}
