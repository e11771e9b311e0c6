//! The public room directory across servers: a client lists another
//! server's published rooms with `server=` (`GET`, and `POST` with a search,
//! which goes over federation as a `POST`), Weft with Synapse each way and
//! Weft with Weft; rooms that do not federate are not listed to other
//! servers; a server that does not share its directory refuses.

use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{
    on_both_backends,
    support::{Backend, TestServer, encode, errcode, synapse::Synapse},
};

on_both_backends!(weft_lists_another_wefts_public_rooms_when_it_shares_them);

const SHARED: &str = "allow_public_rooms_over_federation = true";

fn room_ids(body: &Value) -> Vec<String> {
    body["chunk"].as_array().unwrap_or_else(|| panic!("no chunk: {body}")).iter().filter_map(|room| room["room_id"].as_str().map(str::to_owned)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weft_and_synapse_list_each_others_public_rooms() {
    let synapse = Synapse::start().await;
    let weft = TestServer::builder(Backend::Sqlite).federation().config(SHARED).start().await;
    let on_synapse = synapse.register("lister").await;
    let on_weft = weft.register("lister", "password-of-lister").await;

    // A room published on Synapse, listed by a Weft client.
    let body = json!({"visibility": "public", "preset": "public_chat", "name": "Synapse Lounge", "topic": "tea"});
    let (status, created) = synapse.post("/_matrix/client/v3/createRoom", Some(&on_synapse.access_token), body).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let synapse_room = created["room_id"].as_str().unwrap().to_owned();
    let remote = format!("/_matrix/client/v3/publicRooms?server={}", encode(&synapse.server_name));
    let (status, body) = weft.get(&remote, Some(&on_weft.access_token)).await;
    assert_eq!(status, StatusCode::OK, "{body}\n{}", synapse.logs());
    assert!(room_ids(&body).contains(&synapse_room), "{body}");
    let listed = body["chunk"].as_array().unwrap().iter().find(|room| room["room_id"] == json!(synapse_room)).unwrap();
    assert_eq!((listed["name"].as_str(), listed["topic"].as_str()), (Some("Synapse Lounge"), Some("tea")), "{listed}");
    // A search goes as a `POST`; Synapse filters.
    let (status, body) = weft.post(&remote, Some(&on_weft.access_token), json!({"filter": {"generic_search_term": "lounge"}})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(room_ids(&body), vec![synapse_room.clone()]);
    let (status, body) = weft.post(&remote, Some(&on_weft.access_token), json!({"filter": {"generic_search_term": "nothing like it"}})).await;
    assert_eq!((status, room_ids(&body).len()), (StatusCode::OK, 0), "{body}");
    // Another server's directory needs a user.
    let (status, body) = weft.get(&remote, None).await;
    assert_eq!((status, errcode(&body)), (StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN"), "{body}");

    // A room published on Weft, listed by a Synapse client (Weft serving
    // the federation `GET`, and the `POST` of Synapse's search).
    let body = json!({"visibility": "public", "preset": "public_chat", "name": "Weft Hall", "topic": "coffee"});
    let (status, created) = weft.post("/_matrix/client/v3/createRoom", Some(&on_weft.access_token), body).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let weft_room = created["room_id"].as_str().unwrap().to_owned();
    let remote = format!("/_matrix/client/v3/publicRooms?server={}", encode(&weft.server_name));
    let (status, body) = synapse.request(Method::GET, &remote, Some(&on_synapse.access_token), None).await;
    assert_eq!(status, StatusCode::OK, "{body}\n{}", synapse.logs());
    assert!(room_ids(&body).contains(&weft_room), "{body}");
    let listed = body["chunk"].as_array().unwrap().iter().find(|room| room["room_id"] == json!(weft_room)).unwrap();
    assert_eq!((listed["name"].as_str(), listed["topic"].as_str(), listed["num_joined_members"].as_u64()), (Some("Weft Hall"), Some("coffee"), Some(1)));
    let (status, body) = synapse.post(&remote, Some(&on_synapse.access_token), json!({"filter": {"generic_search_term": "HALL"}})).await;
    assert_eq!(status, StatusCode::OK, "{body}\n{}", synapse.logs());
    assert_eq!(room_ids(&body), vec![weft_room.clone()]);
    let (status, body) = synapse.post(&remote, Some(&on_synapse.access_token), json!({"filter": {"generic_search_term": "lounge"}})).await;
    assert_eq!((status, room_ids(&body).len()), (StatusCode::OK, 0), "{body}");
}

async fn weft_lists_another_wefts_public_rooms_when_it_shares_them(backend: Backend) {
    let sharing = TestServer::builder(backend).federation().config(SHARED).start().await;
    let asking = TestServer::builder(backend).federation().start().await;
    let closed = TestServer::builder(backend).federation().start().await;
    let owner = sharing.register("owner", "password-of-owner").await;
    let reader = asking.register("reader", "password-of-reader").await;
    let token = Some(reader.access_token.as_str());

    let mut published = Vec::new();
    for name in ["Alpha", "Beta", "Gamma"] {
        let (status, created) = sharing
            .post("/_matrix/client/v3/createRoom", Some(&owner.access_token), json!({"visibility": "public", "preset": "public_chat", "name": name}))
            .await;
        assert_eq!(status, StatusCode::OK, "{created}");
        published.push(created["room_id"].as_str().unwrap().to_owned());
    }
    let body = json!({"visibility": "public", "name": "Local only", "creation_content": {"m.federate": false}});
    let (status, created) = sharing.post("/_matrix/client/v3/createRoom", Some(&owner.access_token), body).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let local_only = created["room_id"].as_str().unwrap().to_owned();
    // Its own users see every published room.
    let (_, body) = sharing.get("/_matrix/client/v3/publicRooms", Some(&owner.access_token)).await;
    assert!(room_ids(&body).contains(&local_only), "{body}");

    let remote = format!("/_matrix/client/v3/publicRooms?server={}", encode(&sharing.server_name));
    let (status, body) = asking.get(&remote, token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut listed = room_ids(&body);
    listed.sort();
    let mut expected = published.clone();
    expected.sort();
    assert_eq!(listed, expected, "the room created with m.federate false is not shown to other servers: {body}");
    assert_eq!(body["total_room_count_estimate"], json!(3), "{body}");

    // Pages.
    let (status, first) = asking.get(&format!("{remote}&limit=2"), token).await;
    assert_eq!((status, room_ids(&first).len()), (StatusCode::OK, 2), "{first}");
    let next = first["next_batch"].as_str().unwrap_or_else(|| panic!("a next page: {first}"));
    let (status, second) = asking.get(&format!("{remote}&limit=2&since={next}"), token).await;
    assert_eq!((status, room_ids(&second).len()), (StatusCode::OK, 1), "{second}");
    assert!(second.get("next_batch").is_none_or(Value::is_null), "{second}");

    // A search, on the serving side.
    let (status, body) = asking.post(&remote, token, json!({"filter": {"generic_search_term": "gam"}, "limit": 10})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(room_ids(&body), vec![published[2].clone()]);
    // All networks, and a network and all of them at once.
    let (status, body) = asking.post(&remote, token, json!({"include_all_networks": true})).await;
    assert_eq!((status, room_ids(&body).len()), (StatusCode::OK, 3), "{body}");

    // A server that does not share its directory refuses, as Synapse does.
    let remote = format!("/_matrix/client/v3/publicRooms?server={}", encode(&closed.server_name));
    let (status, body) = asking.get(&remote, token).await;
    assert_eq!((status, errcode(&body)), (StatusCode::FORBIDDEN, "M_FORBIDDEN"), "{body}");
    let (status, body) = asking.post(&remote, token, json!({"filter": {"generic_search_term": "x"}})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::FORBIDDEN, "M_FORBIDDEN"), "{body}");
    // Its own users still list it.
    let (status, _) = closed.get("/_matrix/client/v3/publicRooms", None).await;
    assert_eq!(status, StatusCode::OK);
}
