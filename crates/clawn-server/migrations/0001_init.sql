-- Clawn control-plane schema. Runs unchanged on SQLite and PostgreSQL:
-- ids are TEXT (UUID), times are BIGINT Unix milliseconds, flags are BIGINT 0/1.

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE users (
    id             TEXT PRIMARY KEY,
    email          TEXT NOT NULL UNIQUE,
    password_hash  TEXT NOT NULL,
    role           TEXT NOT NULL CHECK (role IN ('user', 'admin')),
    device_slots   BIGINT NOT NULL DEFAULT 1 CHECK (device_slots >= 0),
    -- Maintained in the same transaction as every device create/revoke; the conditional
    -- increment `active_devices < device_slots` is what enforces the slot limit under
    -- concurrency on both databases.
    active_devices BIGINT NOT NULL DEFAULT 0 CHECK (active_devices >= 0),
    disabled       BIGINT NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);

CREATE TABLE sessions (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash   TEXT NOT NULL UNIQUE,
    csrf_hash    TEXT,
    kind         TEXT NOT NULL CHECK (kind IN ('cookie', 'bearer')),
    created_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    client_addr  TEXT,
    user_agent   TEXT
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE api_tokens (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    token_hash   TEXT NOT NULL UNIQUE,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked_at   BIGINT
);
CREATE INDEX api_tokens_user ON api_tokens (user_id);

CREATE TABLE regions (
    id          TEXT PRIMARY KEY,
    code        TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL,
    cidr        TEXT NOT NULL,
    node_prefix BIGINT NOT NULL CHECK (node_prefix BETWEEN 8 AND 30),
    dns         TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE join_tokens (
    id           TEXT PRIMARY KEY,
    token_hash   TEXT NOT NULL UNIQUE,
    region_id    TEXT NOT NULL REFERENCES regions (id),
    capacity     BIGINT NOT NULL CHECK (capacity > 0),
    created_by   TEXT REFERENCES users (id),
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    used_at      BIGINT,
    used_by_node TEXT
);

CREATE TABLE nodes (
    id                  TEXT PRIMARY KEY,
    region_id           TEXT NOT NULL REFERENCES regions (id),
    name                TEXT NOT NULL,
    endpoint            TEXT NOT NULL,
    listen_port         BIGINT NOT NULL CHECK (listen_port BETWEEN 1 AND 65535),
    wg_public_key       TEXT NOT NULL UNIQUE,
    identity_public_key TEXT NOT NULL,
    credential_hash     TEXT NOT NULL UNIQUE,
    pool                TEXT NOT NULL,
    pool_first          BIGINT NOT NULL,
    pool_last           BIGINT NOT NULL,
    address             TEXT NOT NULL,
    exit_ipv4           TEXT,
    capacity            BIGINT NOT NULL CHECK (capacity >= 0),
    live_peers          BIGINT NOT NULL DEFAULT 0 CHECK (live_peers >= 0),
    state               TEXT NOT NULL CHECK (state IN ('pending', 'online', 'degraded', 'offline',
                                                      'maintenance', 'draining', 'experimental')),
    capabilities        TEXT NOT NULL,
    version             BIGINT NOT NULL DEFAULT 1,
    acked_version       BIGINT,
    last_heartbeat      BIGINT,
    metrics             TEXT,
    created_at          BIGINT NOT NULL,
    removed_at          BIGINT
);
CREATE UNIQUE INDEX nodes_live_pool ON nodes (region_id, pool) WHERE removed_at IS NULL;
CREATE INDEX nodes_region ON nodes (region_id);

CREATE TABLE devices (
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id),
    name       TEXT NOT NULL,
    public_key TEXT NOT NULL UNIQUE,
    state      TEXT NOT NULL CHECK (state IN ('active', 'revoked')),
    region_id  TEXT NOT NULL REFERENCES regions (id),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    revoked_at BIGINT,
    CHECK ((state = 'revoked') = (revoked_at IS NOT NULL)),
    UNIQUE (id, user_id)
);
CREATE INDEX devices_user ON devices (user_id);

-- A peer is the connection identity device -> node. Rotation and reassignment retire the
-- old row and insert a new one, so history stays. A key is never given to another device
-- (devices.public_key is unique and the API refuses any key a peer ever had), but the same
-- device may get a new peer row with its own key again (suspended while its owner was
-- disabled, then restored).
CREATE TABLE peers (
    id              TEXT PRIMARY KEY,
    device_id       TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    node_id         TEXT NOT NULL REFERENCES nodes (id),
    public_key      TEXT NOT NULL,
    tunnel_ip       TEXT NOT NULL,
    tunnel_ip_int   BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    created_version BIGINT NOT NULL,
    retired_at      BIGINT,
    retired_version BIGINT,
    retire_reason   TEXT,
    FOREIGN KEY (device_id, user_id) REFERENCES devices (id, user_id),
    UNIQUE (id, user_id)
);
CREATE UNIQUE INDEX peers_one_live_per_device ON peers (device_id) WHERE retired_at IS NULL;
CREATE UNIQUE INDEX peers_live_key ON peers (public_key) WHERE retired_at IS NULL;
CREATE INDEX peers_key ON peers (public_key);
CREATE UNIQUE INDEX peers_live_ip_per_node ON peers (node_id, tunnel_ip_int) WHERE retired_at IS NULL;
CREATE INDEX peers_node_created ON peers (node_id, created_version);
CREATE INDEX peers_node_retired ON peers (node_id, retired_version);

CREATE TABLE peer_usage (
    peer_id        TEXT PRIMARY KEY,
    user_id        TEXT NOT NULL,
    last_handshake BIGINT,
    rx_bytes       BIGINT NOT NULL DEFAULT 0,
    tx_bytes       BIGINT NOT NULL DEFAULT 0,
    endpoint       TEXT,
    updated_at     BIGINT NOT NULL,
    FOREIGN KEY (peer_id, user_id) REFERENCES peers (id, user_id)
);

CREATE TABLE audit_events (
    id          TEXT PRIMARY KEY,
    at          BIGINT NOT NULL,
    actor_kind  TEXT NOT NULL CHECK (actor_kind IN ('user', 'admin', 'system', 'node')),
    actor_id    TEXT,
    actor_label TEXT,
    action      TEXT NOT NULL,
    target_kind TEXT NOT NULL,
    target_id   TEXT,
    metadata    TEXT NOT NULL,
    client_addr TEXT
);
CREATE INDEX audit_at ON audit_events (at);
CREATE INDEX audit_action ON audit_events (action);
CREATE INDEX audit_target ON audit_events (target_id);
CREATE INDEX audit_actor ON audit_events (actor_id);
