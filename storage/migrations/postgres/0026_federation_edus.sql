-- EDUs waiting for a destination (to-device messages for other servers'
-- devices), sent with the destination's next transaction and deleted once
-- it is accepted. Kept in step with the other engine's 0026_federation_edus.sql.
CREATE TABLE federation_edu_outbox (
    id BIGSERIAL PRIMARY KEY,
    destination TEXT NOT NULL,
    edu_json TEXT NOT NULL
);
CREATE INDEX federation_edu_outbox_by_destination ON federation_edu_outbox (destination, id);
