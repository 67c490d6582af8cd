-- Load-score routing, node health, failover, priority access tokens, hygiene and abuse.

-- The node's link capacity for bandwidth utilisation (NULL = the configured default).
ALTER TABLE nodes ADD COLUMN link_mbps BIGINT;
-- Latest health measurements and verdict (JSON: rtt, baseline, loss, reasons), written
-- by the node's stream task on every telemetry report.
ALTER TABLE nodes ADD COLUMN health TEXT;
-- Why the node is degraded (NULL when it is not).
ALTER TABLE nodes ADD COLUMN health_reason TEXT;
-- When the node last became offline (failover counts from here).
ALTER TABLE nodes ADD COLUMN offline_since BIGINT;
ALTER TABLE nodes ADD COLUMN state_changed_at BIGINT;

-- Set while an active device has nowhere to go (its node failed or drains and no node of
-- the region has room); cleared when it is placed.
ALTER TABLE devices ADD COLUMN waiting_since BIGINT;
-- Set when abuse signals crossed a threshold; cleared by an admin release.
ALTER TABLE devices ADD COLUMN quarantined_at BIGINT;
ALTER TABLE devices ADD COLUMN quarantine_reason TEXT;
-- The last time the system (failover, drain, reassignment) gave the device a new node.
ALTER TABLE devices ADD COLUMN moved_at BIGINT;
ALTER TABLE devices ADD COLUMN moved_reason TEXT;

-- Service class of the peer in the node's desired state, and the node version at which it
-- last changed (deltas carry class changes as `update`, never as remove + add).
ALTER TABLE peers ADD COLUMN class TEXT NOT NULL DEFAULT 'standard' CHECK (class IN ('standard', 'priority'));
ALTER TABLE peers ADD COLUMN class_version BIGINT;
-- Set when the idle policy flagged this peer.
ALTER TABLE peers ADD COLUMN idle_flagged_at BIGINT;
CREATE INDEX peers_node_class ON peers (node_id, class_version);
-- The monitor's once-a-second passes read only these small sets, never every peer.
CREATE INDEX peers_live_priority ON peers (user_id) WHERE class = 'priority' AND retired_at IS NULL;
CREATE INDEX peers_live_user ON peers (user_id) WHERE retired_at IS NULL;
CREATE INDEX peers_idle_flagged ON peers (idle_flagged_at) WHERE idle_flagged_at IS NOT NULL;
CREATE INDEX devices_waiting ON devices (waiting_since) WHERE waiting_since IS NOT NULL;
CREATE INDEX devices_quarantined ON devices (quarantined_at) WHERE quarantined_at IS NOT NULL;

CREATE TABLE priority_tokens (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users (id),
    region_id   TEXT NOT NULL REFERENCES regions (id),
    starts_at   BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    note        TEXT NOT NULL DEFAULT '',
    granted_by  TEXT REFERENCES users (id),
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT,
    CHECK (expires_at > starts_at)
);
CREATE INDEX priority_tokens_user ON priority_tokens (user_id, region_id);
CREATE INDEX priority_tokens_expiry ON priority_tokens (expires_at);
