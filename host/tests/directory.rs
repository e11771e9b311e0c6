//! Room aliases and the public room directory.

use http::StatusCode;
use serde_json::json;

use crate::{
    on_both_backends,
    rooms::create_room,
    support::{Backend, TestServer, errcode},
};

on_both_backends!(
    aliases_resolve_join_and_delete,
    the_public_directory_lists_published_rooms,
    canonical_aliases_must_point_at_the_room,
    the_directory_filters_by_room_type,
    a_deleted_alias_leaves_the_canonical_alias,
);

async fn aliases_resolve_join_and_delete(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let alias = format!("#lobby:{}", server.server_name);
    let encoded = alias.replace('#', "%23");
    let room = create_room(&server, &alice.access_token, json!({"preset": "public_chat", "room_alias_name": "lobby"})).await;
    let (status, body) = server.get(&format!("/_matrix/client/v3/directory/room/{encoded}"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["room_id"], json!(room));
    assert_eq!(body["servers"], json!([server.server_name]));
    let (_, canonical) = server.get(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.canonical_alias/"), Some(&alice.access_token)).await;
    assert_eq!(canonical["alias"], json!(alias));

    let (status, body) = server.post("/_matrix/client/v3/createRoom", Some(&alice.access_token), json!({"room_alias_name": "lobby"})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_ROOM_IN_USE"));
    let (_, joined) = server.get("/_matrix/client/v3/joined_rooms", Some(&alice.access_token)).await;
    assert_eq!(joined["joined_rooms"], json!([room]), "no second room was made");

    let (status, body) = server.post(&format!("/_matrix/client/v3/join/{encoded}"), Some(&bob.access_token), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["room_id"], json!(room));

    let second = format!("%23second:{}", server.server_name);
    let (status, _) = server.put(&format!("/_matrix/client/v3/directory/room/{second}"), Some(&bob.access_token), json!({"room_id": room})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = server.put(&format!("/_matrix/client/v3/directory/room/{second}"), Some(&alice.access_token), json!({"room_id": room})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::CONFLICT, "M_ROOM_IN_USE"));
    let (status, _) = server.put("/_matrix/client/v3/directory/room/%23x:elsewhere.example", Some(&alice.access_token), json!({"room_id": room})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let eve = server.register("eve", "pw").await;
    let (status, _) =
        server.put(&format!("/_matrix/client/v3/directory/room/%23eve:{}", server.server_name), Some(&eve.access_token), json!({"room_id": room})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "members only");

    let (_, aliases) = server.get(&format!("/_matrix/client/v3/rooms/{room}/aliases"), Some(&alice.access_token)).await;
    assert_eq!(aliases["aliases"], json!([alias.clone(), format!("#second:{}", server.server_name)]));

    let (status, _) = server.delete(&format!("/_matrix/client/v3/directory/room/{encoded}"), Some(&bob.access_token), json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "neither creator nor privileged");
    let (status, _) = server.delete(&format!("/_matrix/client/v3/directory/room/{second}"), Some(&bob.access_token), json!({})).await;
    assert_eq!(status, StatusCode::OK, "the creator may");
    let (status, _) = server.delete(&format!("/_matrix/client/v3/directory/room/{encoded}"), Some(&alice.access_token), json!({})).await;
    assert_eq!(status, StatusCode::OK, "the room admin may");
    let (status, body) = server.get(&format!("/_matrix/client/v3/directory/room/{encoded}"), None).await;
    assert_eq!((status, errcode(&body)), (StatusCode::NOT_FOUND, "M_NOT_FOUND"));
}

async fn the_public_directory_lists_published_rooms(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let busy = create_room(&server, &alice.access_token, json!({"visibility": "public", "preset": "public_chat", "name": "Busy", "topic": "lots"})).await;
    server.post(&format!("/_matrix/client/v3/rooms/{busy}/join"), Some(&bob.access_token), json!({})).await;
    let quiet = create_room(&server, &alice.access_token, json!({"visibility": "public", "name": "Quiet"})).await;
    let hidden = create_room(&server, &alice.access_token, json!({"name": "Hidden"})).await;

    let (status, page) = server.get("/_matrix/client/v3/publicRooms", None).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let ids: Vec<&str> = page["chunk"].as_array().unwrap().iter().map(|r| r["room_id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec![busy.as_str(), quiet.as_str()], "most members first, unpublished rooms absent");
    let first = &page["chunk"][0];
    assert_eq!(first["num_joined_members"], 2);
    assert_eq!(first["name"], "Busy");
    assert_eq!(first["topic"], "lots");
    assert!(first["join_rule"].is_null() || first["join_rule"] == "public", "public is the default, and ruma leaves it out");

    let (_, page) = server.get("/_matrix/client/v3/publicRooms?limit=1", None).await;
    assert_eq!(page["chunk"].as_array().unwrap().len(), 1);
    let next = page["next_batch"].as_str().unwrap();
    let (_, page) = server.get(&format!("/_matrix/client/v3/publicRooms?limit=1&since={next}"), None).await;
    assert_eq!(page["chunk"][0]["room_id"], json!(quiet));
    assert!(page.get("next_batch").is_none_or(|n| n.is_null()));

    let (status, page) = server.post("/_matrix/client/v3/publicRooms", Some(&bob.access_token), json!({"filter": {"generic_search_term": "quiet"}})).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let ids: Vec<&str> = page["chunk"].as_array().unwrap().iter().map(|r| r["room_id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec![quiet.as_str()]);

    let listing = format!("/_matrix/client/v3/directory/list/room/{hidden}");
    assert_eq!(server.get(&listing, None).await.1, json!({"visibility": "private"}));
    let (status, _) = server.put(&listing, Some(&bob.access_token), json!({"visibility": "public"})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, reply) = server.put(&listing, Some(&alice.access_token), json!({})).await;
    assert_eq!(status, StatusCode::OK, "`visibility` defaults to public: {reply}");
    assert_eq!(server.get(&listing, None).await.1, json!({"visibility": "public"}));
    let (_, page) = server.get("/_matrix/client/v3/publicRooms", None).await;
    assert_eq!(page["chunk"].as_array().unwrap().len(), 3);
    let (status, _) = server.get("/_matrix/client/v3/publicRooms?since=bogus", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

/// New aliases in `m.room.canonical_alias` must be aliases of this room.
async fn canonical_aliases_must_point_at_the_room(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let a = alice.access_token.as_str();
    let room = create_room(&server, a, json!({"room_alias_name": "home", "preset": "public_chat"})).await;
    create_room(&server, a, json!({"room_alias_name": "elsewhere"})).await;
    let (home, elsewhere) = (format!("#home:{}", server.server_name), format!("#elsewhere:{}", server.server_name));
    let path = format!("/_matrix/client/v3/rooms/{room}/state/m.room.canonical_alias/");

    for content in
        [json!({"alias": elsewhere}), json!({"alias": home, "alt_aliases": [elsewhere]}), json!({"alias": format!("#nobody:{}", server.server_name)})]
    {
        let (status, body) = server.put(&path, Some(a), content.clone()).await;
        assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_BAD_ALIAS"), "{content}: {body}");
    }
    let (status, body) = server.put(&path, Some(a), json!({"alias": "not an alias"})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_INVALID_PARAM"), "{body}");
    let (status, body) = server.put(&path, Some(a), json!({"alias": home, "alt_aliases": "nope"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // Bob makes an alias; alice lists it; bob deletes it, but lacks the
    // power to take it out of the event, which keeps it.
    let bob = server.register("bob", "pw").await;
    server.post(&format!("/_matrix/client/v3/rooms/{room}/join"), Some(&bob.access_token), json!({})).await;
    let second = format!("#second:{}", server.server_name);
    let second_path = format!("/_matrix/client/v3/directory/room/{}", second.replace('#', "%23"));
    let (status, _) = server.put(&second_path, Some(&bob.access_token), json!({"room_id": room})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = server.put(&path, Some(a), json!({"alias": home, "alt_aliases": [second, "#far:elsewhere.example"]})).await;
    assert_eq!(status, StatusCode::OK, "local aliases of the room, and another server's: {body}");
    let (status, _) = server.delete(&second_path, Some(&bob.access_token), json!({})).await;
    assert_eq!(status, StatusCode::OK, "the alias's creator may delete it");
    // Aliases already in the event are not checked again, even once deleted.
    let (status, body) = server.put(&path, Some(a), json!({"alias": home, "alt_aliases": [second]})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = server.put(&path, Some(a), json!({})).await;
    assert_eq!(status, StatusCode::OK, "removing every alias: {body}");
}

/// `room_types` picks spaces, or (`null`) rooms without a type; entries say their type.
async fn the_directory_filters_by_room_type(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let a = alice.access_token.as_str();
    let room = create_room(&server, a, json!({"visibility": "public", "preset": "public_chat"})).await;
    let space = create_room(&server, a, json!({"visibility": "public", "preset": "public_chat", "creation_content": {"type": "m.space"}})).await;
    let listed = |body: &serde_json::Value| -> Vec<String> {
        body["chunk"].as_array().unwrap().iter().map(|room| room["room_id"].as_str().unwrap().to_owned()).collect()
    };
    let (status, body) = server.post("/_matrix/client/v3/publicRooms", Some(a), json!({"filter": {"room_types": ["m.space"]}})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(listed(&body), vec![space.clone()]);
    assert_eq!(body["chunk"][0]["room_type"], "m.space");
    let (_, body) = server.post("/_matrix/client/v3/publicRooms", Some(a), json!({"filter": {"room_types": [null]}})).await;
    assert_eq!(listed(&body), vec![room.clone()]);
    assert!(body["chunk"][0].get("room_type").is_none());
    let (_, body) = server.post("/_matrix/client/v3/publicRooms", Some(a), json!({"filter": {}})).await;
    assert_eq!(listed(&body).len(), 2);
}

/// As Synapse: deleting an alias also takes it out of `m.room.canonical_alias`.
async fn a_deleted_alias_leaves_the_canonical_alias(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let a = alice.access_token.as_str();
    let room = create_room(&server, a, json!({"room_alias_name": "main"})).await;
    let (main, alt) = (format!("#main:{}", server.server_name), format!("#alt:{}", server.server_name));
    server.put(&format!("/_matrix/client/v3/directory/room/{}", alt.replace('#', "%23")), Some(a), json!({"room_id": room})).await;
    let path = format!("/_matrix/client/v3/rooms/{room}/state/m.room.canonical_alias/");
    let (status, _) = server.put(&path, Some(a), json!({"alias": main, "alt_aliases": [alt]})).await;
    assert_eq!(status, StatusCode::OK);

    server.delete(&format!("/_matrix/client/v3/directory/room/{}", alt.replace('#', "%23")), Some(a), json!({})).await;
    let (_, content) = server.get(&path, Some(a)).await;
    assert_eq!(content, json!({"alias": main}));
    server.delete(&format!("/_matrix/client/v3/directory/room/{}", main.replace('#', "%23")), Some(a), json!({})).await;
    let (_, content) = server.get(&path, Some(a)).await;
    assert_eq!(content, json!({}));
}
