//! Other servers' signing keys. A key is looked up in memory, then in the
//! database, and only then fetched: first from each of `trusted_key_servers`
//! (`POST /_matrix/key/v2/query`, the answer signed by the server itself and
//! by the notary), then from the server (`GET /_matrix/key/v2/server`, signed
//! by itself), as Synapse orders its fetchers. Every verified answer is kept
//! whole (to be served again by this server as a notary) with its keys and
//! their validity; keys in `old_verify_keys`, or that a later answer no
//! longer lists, stay usable for what was signed before they expired.
//!
//! A server is fetched at most once at a time, and a key id it did not list
//! is not asked for again within `REFETCH_AFTER`: an unknown key costs a
//! caller one fetch, not one per request. A server whose fetch failed is not
//! tried again within `FAILURE_BACKOFF` (its callers fail at once), and
//! the per-server fetch state is dropped once no fetch is under way, so
//! requests naming made-up servers hold no memory. A notary's answer that
//! is already expired is ignored.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant},
};

use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, MilliSecondsSinceUnixEpoch, OwnedServerName, ServerName,
    api::federation::discovery::{ServerSigningKeys, get_remote_server_keys_batch, get_server_keys},
    serde::{Base64, Raw},
    signatures::{PublicKeyMap, PublicKeySet},
};

use weft_core::{config::Config, crypto::server_key::SigningKey};
use weft_storage::{Storage, StoredServerKey};

use crate::{FederationClient, FederationError};

/// How long after a fetch a server is not fetched again for a key it lacked.
const REFETCH_AFTER: Duration = Duration::from_secs(60);
/// The longest a fetched key is trusted without asking again (the
/// specification caps `valid_until_ts` at 7 days for signature checks).
const MAX_VALIDITY_MS: i64 = 7 * 24 * 60 * 60 * 1000;

/// The verified keys of one server.
#[derive(Debug, Clone)]
pub struct KeySet {
    /// Key id to public key, with the time each stops being valid (for an
    /// old key, when it expired).
    keys: BTreeMap<String, KeyEntry>,
    /// The answer as received (with its signatures), for notary answers.
    pub json: Option<String>,
    /// When this set must be fetched again.
    pub valid_until_ts: i64,
}

#[derive(Debug, Clone)]
struct KeyEntry {
    key: Base64,
    valid_until_ts: i64,
    old: bool,
}

impl KeySet {
    /// The key `key_id`, if it was valid at `at_ms`.
    pub fn key_valid_at(&self, key_id: &str, at_ms: i64) -> Option<&Base64> {
        self.keys.get(key_id).filter(|entry| entry.valid_until_ts >= at_ms).map(|entry| &entry.key)
    }

    /// Every current (not old) key.
    pub fn current(&self) -> PublicKeySet {
        self.keys.iter().filter(|(_, entry)| !entry.old).map(|(id, entry)| (id.clone(), entry.key.clone())).collect()
    }
}

struct Notary {
    name: OwnedServerName,
    /// The keys its answers must carry a signature of; `None`: its own
    /// keys, fetched from it.
    verify_keys: Option<PublicKeySet>,
}

pub struct ServerKeys {
    own_name: OwnedServerName,
    own_key: Arc<SigningKey>,
    storage: Storage,
    client: Arc<FederationClient>,
    notaries: Vec<Notary>,
    /// Verified keys, as in the database. Read on every signed request.
    memory: RwLock<HashMap<OwnedServerName, Arc<KeySet>>>,
    /// The lock that makes one fetch at a time per server, and when that
    /// server was last fetched; only while a fetch is under way or waited for.
    fetches: Mutex<HashMap<OwnedServerName, Arc<tokio::sync::Mutex<Option<Instant>>>>>,
    /// When fetching a server's keys last failed (bounded: see `remember_failure`).
    failures: Mutex<HashMap<OwnedServerName, Instant>>,
}

/// How long after a failed fetch a server's keys are not asked for again.
const FAILURE_BACKOFF: Duration = Duration::from_secs(10);
/// The most servers whose failed fetch is remembered.
const MAX_REMEMBERED_FAILURES: usize = 10_000;

fn now_ms() -> i64 {
    MilliSecondsSinceUnixEpoch::now().get().into()
}

impl ServerKeys {
    pub(crate) fn new(config: &Config, own_name: OwnedServerName, own_key: Arc<SigningKey>, storage: Storage, client: Arc<FederationClient>) -> Self {
        let notaries = config
            .trusted_key_servers()
            .into_iter()
            .filter_map(|notary| {
                let name = OwnedServerName::try_from(notary.server_name).ok()?;
                let verify_keys = notary
                    .verify_keys
                    .map(|keys| keys.into_iter().filter_map(|(id, key)| Some((id, Base64::parse(key.trim_end_matches('=')).ok()?))).collect::<PublicKeySet>());
                Some(Notary { name, verify_keys })
            })
            .collect();
        Self { own_name, own_key, storage, client, notaries, memory: RwLock::default(), fetches: Mutex::default(), failures: Mutex::default() }
    }

    /// The public key `key_id` of `server` as valid at `at_ms` (now for a
    /// request's signature), fetching the server's keys when they are not
    /// known or no longer valid. `Ok(None)`: the server has no such key.
    pub async fn key(&self, server: &ServerName, key_id: &str, at_ms: i64) -> Result<Option<Base64>, FederationError> {
        if server == self.own_name {
            return Ok((key_id == self.own_key.key_id()).then(|| Base64::new(self.own_key.pair.public_key().to_vec())));
        }
        let known = self.known(server).await?;
        if let Some(keys) = &known
            && let Some(key) = keys.key_valid_at(key_id, at_ms)
        {
            return Ok(Some(key.clone()));
        }
        let fresh = self.fetch(server, known.as_ref().map(|keys| keys.valid_until_ts)).await?;
        Ok(fresh.and_then(|keys| keys.key_valid_at(key_id, at_ms).cloned()))
    }

    /// The keys of `server` valid until at least `minimum_valid_until_ms`,
    /// fetched if need be: what this server serves as a notary.
    pub async fn keys_for_notary(&self, server: &ServerName, minimum_valid_until_ms: i64) -> Result<Option<Arc<KeySet>>, FederationError> {
        let known = self.known(server).await?;
        if let Some(keys) = &known
            && keys.valid_until_ts >= minimum_valid_until_ms
        {
            return Ok(known);
        }
        match self.fetch(server, known.as_ref().map(|keys| keys.valid_until_ts)).await? {
            Some(fresh) => Ok(Some(fresh)),
            None => Ok(known),
        }
    }

    /// What memory or the database knows of `server`.
    async fn known(&self, server: &ServerName) -> Result<Option<Arc<KeySet>>, FederationError> {
        if let Some(keys) = self.memory.read().unwrap_or_else(|p| p.into_inner()).get(server) {
            return Ok(Some(keys.clone()));
        }
        let stored = self.storage.server_signing_keys(server.as_str()).await?;
        if stored.is_empty() {
            return Ok(None);
        }
        let (json, valid_until_ts) = self.storage.server_keys_json(server.as_str()).await?.map_or((None, 0), |(json, until)| (Some(json), until));
        let keys = stored
            .into_iter()
            .filter_map(|key| {
                let entry = KeyEntry {
                    key: Base64::parse(&key.verify_key).ok()?,
                    valid_until_ts: key.expired_ts.unwrap_or(key.valid_until_ts),
                    old: key.expired_ts.is_some(),
                };
                Some((key.key_id, entry))
            })
            .collect();
        let set = Arc::new(KeySet { keys, json, valid_until_ts });
        self.memory.write().unwrap_or_else(|p| p.into_inner()).insert(server.to_owned(), set.clone());
        Ok(Some(set))
    }

    /// Fetches `server`'s keys unless another caller just did; `seen_until`
    /// is the validity of what the caller already knew.
    async fn fetch(&self, server: &ServerName, seen_until: Option<i64>) -> Result<Option<Arc<KeySet>>, FederationError> {
        if let Some(failed) = self.failures.lock().unwrap_or_else(|p| p.into_inner()).get(server)
            && failed.elapsed() < FAILURE_BACKOFF
        {
            return Err(FederationError::Keys { server: server.to_string(), reason: "its keys could not be fetched a moment ago".into() });
        }
        let lock = self.fetches.lock().unwrap_or_else(|p| p.into_inner()).entry(server.to_owned()).or_default().clone();
        let fetched = self.fetch_locked(server, seen_until, &lock).await;
        let mut fetches = self.fetches.lock().unwrap_or_else(|p| p.into_inner());
        // Ours and the map's: nobody else waits, the entry can go.
        if Arc::strong_count(&lock) == 2 {
            fetches.remove(server);
        }
        drop(fetches);
        if fetched.is_err() {
            self.remember_failure(server);
        }
        fetched
    }

    fn remember_failure(&self, server: &ServerName) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if failures.len() >= MAX_REMEMBERED_FAILURES {
            failures.retain(|_, at| at.elapsed() < FAILURE_BACKOFF);
            if failures.len() >= MAX_REMEMBERED_FAILURES {
                return;
            }
        }
        failures.insert(server.to_owned(), Instant::now());
    }

    async fn fetch_locked(
        &self,
        server: &ServerName,
        seen_until: Option<i64>,
        lock: &tokio::sync::Mutex<Option<Instant>>,
    ) -> Result<Option<Arc<KeySet>>, FederationError> {
        let mut last = lock.lock().await;
        let current = self.memory.read().unwrap_or_else(|p| p.into_inner()).get(server).cloned();
        if let Some(current) = &current
            && Some(current.valid_until_ts) != seen_until
        {
            // Someone fetched while this caller waited.
            return Ok(Some(current.clone()));
        }
        if last.is_some_and(|at| at.elapsed() < REFETCH_AFTER) && current.as_ref().is_some_and(|keys| keys.valid_until_ts > now_ms()) {
            return Ok(current);
        }
        *last = Some(Instant::now());
        let mut problems = Vec::new();
        for notary in &self.notaries {
            if notary.name == server {
                continue;
            }
            match self.fetch_from_notary(server, notary).await {
                Ok(Some(keys)) => return Ok(Some(keys)),
                Ok(None) => problems.push(format!("{} knows no keys", notary.name)),
                Err(error) => problems.push(error.to_string()),
            }
        }
        match self.fetch_direct(server).await {
            Ok(keys) => Ok(Some(keys)),
            Err(error) => {
                problems.push(error.to_string());
                tracing::info!(%server, problems = ?problems, "could not fetch the server's keys");
                Err(FederationError::Keys { server: server.to_string(), reason: problems.join("; ") })
            }
        }
    }

    async fn fetch_direct(&self, server: &ServerName) -> Result<Arc<KeySet>, FederationError> {
        let response = self.client.send_request(server, get_server_keys::v2::Request::new()).await?;
        self.accept(server, response.server_key, None).await
    }

    async fn fetch_from_notary(&self, server: &ServerName, notary: &Notary) -> Result<Option<Arc<KeySet>>, FederationError> {
        let notary_keys = match &notary.verify_keys {
            Some(keys) => keys.clone(),
            None => {
                let response = self.client.send_request(&notary.name, get_server_keys::v2::Request::new()).await?;
                let (_, parsed) = self_signed(&notary.name, &response.server_key)?;
                parsed.verify_keys.into_iter().map(|(id, key)| (id.to_string(), key.key)).collect()
            }
        };
        let query = BTreeMap::from([(server.to_owned(), BTreeMap::new())]);
        let response = self.client.send_request(&notary.name, get_remote_server_keys_batch::v2::Request::new(query)).await?;
        let mut newest: Option<Arc<KeySet>> = None;
        for answer in response.server_keys {
            if answer.get_field::<OwnedServerName>("server_name").ok().flatten().as_deref() != Some(server) {
                continue;
            }
            // A stale copy would mark the server's current keys old.
            let valid_until: Option<MilliSecondsSinceUnixEpoch> = answer.get_field("valid_until_ts").ok().flatten();
            if valid_until.is_none_or(|until| i64::from(until.get()) <= now_ms()) {
                continue;
            }
            let keys = self.accept(server, answer, Some((&notary.name, &notary_keys))).await?;
            if newest.as_ref().is_none_or(|n| n.valid_until_ts < keys.valid_until_ts) {
                newest = Some(keys);
            }
        }
        Ok(newest)
    }

    /// Verifies an answer about `server` (self-signed, and signed by the
    /// notary when it came through one), stores it and caches it.
    async fn accept(
        &self,
        server: &ServerName,
        answer: Raw<ServerSigningKeys>,
        notary: Option<(&ServerName, &PublicKeySet)>,
    ) -> Result<Arc<KeySet>, FederationError> {
        let (object, parsed) = self_signed(server, &answer)?;
        if let Some((notary, keys)) = notary {
            verify_by(&object, notary, keys)
                .map_err(|reason| FederationError::Keys { server: server.to_string(), reason: format!("notary {notary}: {reason}") })?;
        }
        let now = now_ms();
        let valid_until_ts = i64::from(parsed.valid_until_ts.get()).min(now + MAX_VALIDITY_MS);
        let mut stored: Vec<StoredServerKey> = Vec::new();
        for (id, key) in &parsed.verify_keys {
            stored.push(StoredServerKey { key_id: id.to_string(), verify_key: key.key.encode(), valid_until_ts, expired_ts: None });
        }
        for (id, key) in &parsed.old_verify_keys {
            let expired: i64 = key.expired_ts.get().into();
            stored.push(StoredServerKey { key_id: id.to_string(), verify_key: key.key.encode(), valid_until_ts: expired, expired_ts: Some(expired) });
        }
        // Keys an earlier answer listed and this one does not: old from now on.
        if let Some(previous) = self.memory.read().unwrap_or_else(|p| p.into_inner()).get(server) {
            for (id, entry) in &previous.keys {
                if !stored.iter().any(|key| key.key_id == *id) {
                    let expired = entry.valid_until_ts.min(now);
                    stored.push(StoredServerKey { key_id: id.clone(), verify_key: entry.key.encode(), valid_until_ts: expired, expired_ts: Some(expired) });
                }
            }
        }
        let json = answer.json().get().to_owned();
        self.storage.store_server_keys(server.as_str(), &json, valid_until_ts, &stored).await?;
        let keys = stored
            .into_iter()
            .filter_map(|key| {
                let entry = KeyEntry { key: Base64::parse(&key.verify_key).ok()?, valid_until_ts: key.valid_until_ts, old: key.expired_ts.is_some() };
                Some((key.key_id, entry))
            })
            .collect();
        let set = Arc::new(KeySet { keys, json: Some(json), valid_until_ts });
        self.memory.write().unwrap_or_else(|p| p.into_inner()).insert(server.to_owned(), set.clone());
        Ok(set)
    }

    /// This server's own key answer, signed, valid for `validity`.
    pub fn own_keys(&self, validity: Duration) -> Option<Raw<ServerSigningKeys>> {
        let valid_until = MilliSecondsSinceUnixEpoch::from_system_time(std::time::SystemTime::now() + validity)?;
        let mut keys = ServerSigningKeys::new(self.own_name.clone(), valid_until);
        let key_id = ruma::ServerSigningKeyId::parse(self.own_key.key_id()).ok()?;
        keys.verify_keys.insert(key_id, ruma::api::federation::discovery::VerifyKey::new(Base64::new(self.own_key.pair.public_key().to_vec())));
        let CanonicalJsonValue::Object(mut object) = ruma::canonical_json::to_canonical_value(&keys).ok()? else { return None };
        ruma::signatures::sign_json(self.own_name.as_str(), &self.own_key.pair, &mut object).ok()?;
        Raw::from_json_string(serde_json::to_string(&object).ok()?).ok()
    }

    /// `answer` with this server's signature added (notary answers).
    pub fn countersign(&self, json: &str) -> Option<Raw<ServerSigningKeys>> {
        let mut object: CanonicalJsonObject = serde_json::from_str(json).ok()?;
        ruma::signatures::sign_json(self.own_name.as_str(), &self.own_key.pair, &mut object).ok()?;
        Raw::from_json_string(serde_json::to_string(&object).ok()?).ok()
    }
}

/// Parses a key answer of `server` and checks it is signed by its own keys.
fn self_signed(server: &ServerName, answer: &Raw<ServerSigningKeys>) -> Result<(CanonicalJsonObject, ServerSigningKeys), FederationError> {
    let invalid = |reason: String| FederationError::Keys { server: server.to_string(), reason };
    let parsed: ServerSigningKeys = answer.deserialize().map_err(|e| invalid(format!("not a key answer: {e}")))?;
    if parsed.server_name != server {
        return Err(invalid(format!("the answer is about {}", parsed.server_name)));
    }
    if parsed.verify_keys.is_empty() {
        return Err(invalid("the answer has no verify_keys".into()));
    }
    let object: CanonicalJsonObject = serde_json::from_str(answer.json().get()).map_err(|e| invalid(format!("not canonical JSON: {e}")))?;
    let own: PublicKeySet = parsed.verify_keys.iter().map(|(id, key)| (id.to_string(), key.key.clone())).collect();
    verify_by(&object, server, &own).map_err(|reason| invalid(format!("self-signature: {reason}")))?;
    Ok((object, parsed))
}

/// Checks that `object` carries a valid signature of `entity` by one of `keys`.
fn verify_by(object: &CanonicalJsonObject, entity: &ServerName, keys: &PublicKeySet) -> Result<(), String> {
    let signatures = match object.get("signatures") {
        Some(CanonicalJsonValue::Object(signatures)) => signatures,
        _ => return Err("no signatures".into()),
    };
    let Some(CanonicalJsonValue::Object(own)) = signatures.get(entity.as_str()) else {
        return Err(format!("not signed by {entity}"));
    };
    let own: CanonicalJsonObject = own.iter().filter(|(id, _)| keys.contains_key(*id)).map(|(id, sig)| (id.clone(), sig.clone())).collect();
    if own.is_empty() {
        return Err(format!("not signed with a known key of {entity}"));
    }
    let mut only = object.clone();
    only.insert("signatures".into(), CanonicalJsonValue::Object(CanonicalJsonObject::from([(entity.to_string(), CanonicalJsonValue::Object(own))])));
    let map: PublicKeyMap = BTreeMap::from([(entity.to_string(), keys.clone())]);
    ruma::signatures::verify_json(&map, &only).map_err(|e| e.to_string())
}
