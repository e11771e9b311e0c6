-- Application services. Kept in step with the other engine's 0022_appservices.sql.

-- Rooms an appservice published in the room directory of one of its
-- third-party networks (`PUT /directory/list/appservice/{networkId}/{roomId}`).
CREATE TABLE appservice_room_list (
    appservice_id TEXT NOT NULL,
    network_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    PRIMARY KEY (appservice_id, network_id, room_id)
);

-- How far the appservice notifier has matched the events stream against the
-- registrations. It starts at the newest event: an appservice is sent what
-- happens after it is registered, not the history.
-- The same for the receipts stream (`receipts_stream_id`).
CREATE TABLE appservice_stream_position (
    stream_ordering BIGINT NOT NULL,
    receipts_stream_id BIGINT NOT NULL
);
INSERT INTO appservice_stream_position (stream_ordering, receipts_stream_id)
    SELECT (SELECT COALESCE(MAX(stream_ordering), 0) FROM events), (SELECT COALESCE(MAX(stream_id), 0) FROM receipts);

-- What each appservice is owed and is not in a transaction yet, in order:
-- kind 'event' (a client-format event), 'ephemeral' (typing, a receipt,
-- presence) or 'to_device' (a message with to_user_id and to_device_id).
CREATE TABLE appservice_queue (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    appservice_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    item_json TEXT NOT NULL
);
CREATE INDEX appservice_queue_by_service ON appservice_queue (appservice_id, seq);

-- Transactions built and not yet answered with 2xx by their appservice,
-- whole (a retry sends the same body, ephemeral and to-device included).
CREATE TABLE appservice_txns (
    appservice_id TEXT NOT NULL,
    txn_id BIGINT NOT NULL,
    body_json TEXT NOT NULL,
    PRIMARY KEY (appservice_id, txn_id)
);

-- The last transaction id handed out: one increasing sequence for every
-- appservice, as Synapse's application_services_txn_id_seq.
CREATE TABLE appservice_txn_id (
    last_txn_id BIGINT NOT NULL
);
INSERT INTO appservice_txn_id (last_txn_id) VALUES (0);
