-- Where each federation sender instance has read the events stream up to
-- (`federation_sender_instances` shard the destinations). An instance
-- without a row starts where the slowest sender is, else at the single
-- position of migration 0025.
CREATE TABLE federation_sender_positions (
    instance_name TEXT PRIMARY KEY,
    stream_id BIGINT NOT NULL
);
