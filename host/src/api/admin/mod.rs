//! Synapse's admin API, as far as Weft serves it: shared-secret
//! registration, the list of users' reports, and media (a user's uploads,
//! deleting one).

mod media;
mod register;
mod reports;

pub use register::compute_mac;

use super::{groups::EndpointGroup, ruma_route::RouteTable};

pub fn routes(table: &mut RouteTable) {
    table
        .add::<register::get_nonce::Request, _, _>(EndpointGroup::Admin, register::nonce)
        .add::<register::shared_secret::Request, _, _>(EndpointGroup::Admin, register::register)
        .add::<reports::list::Request, _, _>(EndpointGroup::Admin, reports::list)
        .add::<media::list::Request, _, _>(EndpointGroup::Media, media::list)
        .add::<media::delete::Request, _, _>(EndpointGroup::Media, media::delete);
}
