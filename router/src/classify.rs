//! Request to endpoint group: the path is matched against the templates of
//! `weft_core::routes` with `matchit` (the matcher axum routes with), then the
//! method picks among the groups declared for that path. No regular
//! expressions of the Matrix API are written anywhere.
//!
//! Also decides what a request sticks by: `/sync` by user, room pagination by
//! room, events sent into a room to the room's persister, inbound federation
//! transactions by origin. SSO sticks to nothing: a login's state is in the
//! database, so each of its requests may reach any instance serving `sso`.

use std::collections::BTreeMap;

use http::Method;

use weft_core::endpoint_groups::EndpointGroup;
use weft_core::routes::RouteEntry;

/// What keeps requests of one kind on one instance of their group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sticky {
    /// Any live instance (round robin).
    None,
    /// The user owning the access token.
    User,
    /// The room in the path.
    Room(String),
    /// The events persister of the room in the path, when it serves the
    /// group (it writes without forwarding); any live instance otherwise.
    RoomWriter(String),
    /// The origin server of a federation request (`X-Matrix` authorization).
    Origin,
}

/// Where a request goes: a group (or `main` for unknown paths) and how it sticks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified {
    /// `None` for a path no route declares: those go to `main`.
    pub group: Option<EndpointGroup>,
    pub sticky: Sticky,
}

#[derive(Debug, thiserror::Error)]
#[error("the route `{path}` conflicts with another: {source}")]
pub struct ClassifyError {
    path: String,
    source: matchit::InsertError,
}

/// The matcher over every declared path template.
pub struct Classifier {
    matcher: matchit::Router<Vec<(Method, EndpointGroup)>>,
    initial_sync_separately: bool,
}

impl Classifier {
    pub fn new(routes: &[RouteEntry], initial_sync_separately: bool) -> Result<Self, ClassifyError> {
        let mut by_path: BTreeMap<&str, Vec<(Method, EndpointGroup)>> = BTreeMap::new();
        for route in routes {
            by_path.entry(route.path).or_default().push((route.method.clone(), route.group));
        }
        let mut matcher = matchit::Router::new();
        for (path, methods) in by_path {
            matcher.insert(path, methods).map_err(|source| ClassifyError { path: path.to_owned(), source })?;
        }
        Ok(Self { matcher, initial_sync_separately })
    }

    /// Classifies a request by method, path (without the query) and query.
    pub fn classify(&self, method: &Method, path: &str, query: Option<&str>) -> Classified {
        let Ok(matched) = self.matcher.at(path) else {
            return Classified { group: None, sticky: Sticky::None };
        };
        let methods = matched.value;
        // HEAD is answered as GET; OPTIONS (CORS preflight) by whoever serves the path.
        let wanted = if method == Method::HEAD { &Method::GET } else { method };
        let group = methods.iter().find(|(m, _)| m == wanted).or_else(|| methods.first()).map(|(_, group)| *group);
        let Some(mut group) = group else {
            return Classified { group: None, sticky: Sticky::None };
        };
        if group == EndpointGroup::Sync && self.initial_sync_separately && !has_param(query, "since") {
            group = EndpointGroup::InitialSync;
        }
        let sticky = match group {
            EndpointGroup::Sync | EndpointGroup::InitialSync => Sticky::User,
            EndpointGroup::RoomMessages => match matched.params.get("room_id") {
                Some(room) => Sticky::Room(percent_decode(room)),
                None => Sticky::None,
            },
            EndpointGroup::EventSending => match matched.params.get("room_id") {
                Some(room) => Sticky::RoomWriter(percent_decode(room)),
                None => Sticky::None,
            },
            EndpointGroup::FederationTransactions => Sticky::Origin,
            _ => Sticky::None,
        };
        Classified { group: Some(group), sticky }
    }
}

fn has_param(query: Option<&str>, name: &str) -> bool {
    query.is_some_and(|query| form_urlencoded::parse(query.as_bytes()).any(|(key, value)| key == name && !value.is_empty()))
}

/// `%21room%3Aexample.org` and `!room:example.org` are the same room.
fn percent_decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(high), Some(low)) = (bytes.get(i + 1).and_then(|b| hex(*b)), bytes.get(i + 2).and_then(|b| hex(*b)))
        {
            out.push((high * 16 + low) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
