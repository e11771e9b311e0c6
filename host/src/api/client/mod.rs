//! The Client-Server API endpoints, one file per family, each handler typed
//! by its ruma request.

mod account;
mod capabilities;
mod devices;
mod login;
mod logout;
mod register;
mod versions;

pub(crate) use register::validate_new_localpart;

use ruma::api::client::{
    account::{change_password, deactivate, get_username_availability, register as register_api, whoami},
    device::{delete_device, delete_devices, get_device, get_devices, update_device},
    discovery::{get_capabilities, get_supported_versions},
    session::{get_login_types, login as login_api, logout as logout_api, logout_all},
};

use super::{groups::EndpointGroup as G, ruma_route::RouteTable};

pub fn routes(table: &mut RouteTable) {
    table
        .add::<get_supported_versions::Request, _, _>(G::ClientReads, versions::versions)
        .add::<get_capabilities::v3::Request, _, _>(G::ClientReads, capabilities::capabilities)
        .add::<register_api::v3::Request, _, _>(G::Registration, register::register)
        .add::<get_username_availability::v3::Request, _, _>(G::Registration, register::available)
        .add::<get_login_types::v3::Request, _, _>(G::Login, login::login_types)
        .add::<login_api::v3::Request, _, _>(G::Login, login::login)
        .add::<logout_api::v3::Request, _, _>(G::Login, logout::logout)
        .add::<logout_all::v3::Request, _, _>(G::Login, logout::logout_all)
        .add::<whoami::v3::Request, _, _>(G::Account, account::whoami)
        .add::<change_password::v3::Request, _, _>(G::Account, account::change_password)
        .add::<deactivate::v3::Request, _, _>(G::Account, account::deactivate)
        .add::<get_devices::v3::Request, _, _>(G::Devices, devices::list)
        .add::<get_device::v3::Request, _, _>(G::Devices, devices::get)
        .add::<update_device::v3::Request, _, _>(G::Devices, devices::update)
        .add::<delete_device::v3::Request, _, _>(G::Devices, devices::delete)
        .add::<delete_devices::v3::Request, _, _>(G::Devices, devices::delete_many);
}
