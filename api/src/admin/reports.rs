//! `GET /_synapse/admin/v1/event_reports`: the reports users sent, newest
//! first, for server administrators; paginated by `from` (an offset) and
//! `limit`, with `next_token` and `total` as Synapse gives them.

use weft_services::services::AppState;

use crate::{error::ApiResult, ruma_route::Ruma};

const DEFAULT_LIMIT: u64 = 100;

pub mod list {
    //! `GET /_synapse/admin/v1/event_reports`
    use ruma::api::{auth_scheme::AccessToken, metadata, request, response};

    use weft_storage::Report;

    metadata! {
        method: GET,
        rate_limited: false,
        authentication: AccessToken,
        path: "/_synapse/admin/v1/event_reports",
    }

    #[request]
    pub struct Request {
        #[ruma_api(query)]
        pub from: Option<u64>,
        #[ruma_api(query)]
        pub limit: Option<u64>,
    }

    #[response]
    pub struct Response {
        pub event_reports: Vec<Report>,
        pub total: i64,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub next_token: Option<u64>,
    }
}

pub async fn list(state: AppState, request: Ruma<list::Request>) -> ApiResult<list::Response> {
    super::require_admin(request.sender()?)?;
    let from = request.body.from.unwrap_or(0);
    let limit = request.body.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, 1000);
    let (event_reports, total) = state.storage.reports(limit as i64, from as i64).await?;
    let next_token = super::next_token(from, event_reports.len(), total);
    Ok(list::Response { event_reports, total, next_token })
}
