-- Control-plane replicas sharing one database (docs/architecture.md §11).

-- Which stream holds the node: a random id per connection, and the replica serving it.
-- Only the stream that set `stream_conn` may mark the node offline when it ends, so a
-- stream closing late on one replica never undoes the node's new stream on another.
ALTER TABLE nodes ADD COLUMN stream_conn TEXT;
ALTER TABLE nodes ADD COLUMN stream_replica TEXT;

-- The lease length last granted to the node, ms (NULL: it never asked for one). A dead
-- node's devices move only once a lease of this length has surely ended
-- (docs/architecture.md §12).
ALTER TABLE nodes ADD COLUMN lease_ms BIGINT;

-- The monitor's lease: one row. A replica that wins the database's advisory lock bumps
-- `term`; every write the monitor makes first checks that the term is still its own, so
-- a deposed leader (paused, partitioned) can never write after a new one took over.
CREATE TABLE monitor_lease (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    term BIGINT NOT NULL,
    holder TEXT,
    acquired_at BIGINT
);
INSERT INTO monitor_lease (id, term) VALUES (1, 0);
