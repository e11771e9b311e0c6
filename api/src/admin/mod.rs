//! Synapse's admin API, as far as Weft serves it: shared-secret
//! registration, the list of users' reports, and media (a user's uploads,
//! deleting one).

mod media;
mod register;
mod reports;

pub use register::compute_mac;

use weft_core::endpoint_groups::EndpointGroup;

use super::{
    auth::Sender,
    error::{ApiError, ApiResult},
};

/// Endpoints of the admin API other than registration are for server admins.
fn require_admin(sender: &Sender) -> ApiResult<()> {
    if sender.admin { Ok(()) } else { Err(ApiError::forbidden("You are not a server admin")) }
}

/// Synapse's offset pagination: the offset of the next page, while one is left.
fn next_token(from: u64, returned: usize, total: i64) -> Option<u64> {
    let next = from + returned as u64;
    (next < total.max(0) as u64).then_some(next)
}

use super::ruma_route::RouteTable;

pub fn routes(table: &mut RouteTable) {
    table
        .add::<register::get_nonce::Request, _, _>(EndpointGroup::Admin, register::nonce)
        .add::<register::shared_secret::Request, _, _>(EndpointGroup::Admin, register::register)
        .add::<reports::list::Request, _, _>(EndpointGroup::Admin, reports::list)
        .add::<media::list::Request, _, _>(EndpointGroup::Media, media::list)
        .add::<media::delete::Request, _, _>(EndpointGroup::Media, media::delete);
}
