//! The monitor lease: which replica runs the monitor (health verdicts, failover, drain,
//! idle hygiene, metrics sampling), and the term that fences its writes.
//!
//! On PostgreSQL a replica leads while it holds a session-level advisory lock on a
//! connection of its own (outside the pool, so no other work can release it by
//! accident). Taking the lock bumps `monitor_lease.term`; every write of the monitor goes
//! through [`Store::fenced`], whose transactions first read the term `FOR SHARE` and
//! refuse to go on if it moved. The read lock orders the two: a new leader's term bump
//! waits for a stale leader's in-flight write to finish, and once the bump committed no
//! stale write can start. So a leader that was paused or cut off, and whose lock the
//! database released, can never write after another replica took over.
//!
//! On SQLite there is one replica by definition (one process owns the file): it takes a
//! new term at start and keeps it.

use sqlx::{Any, Connection as _, Transaction};
use uuid::Uuid;

use super::{DbKind, Store, StoreResult};

/// The advisory lock key of the monitor (ASCII "clawnmon").
const MONITOR_LOCK_KEY: i64 = 0x636c_6177_6e6d_6f6e;

/// Reads the current term inside a write transaction (`FOR SHARE` on PostgreSQL, so a
/// term change waits for this transaction).
pub(crate) async fn current_term(
    tx: &mut Transaction<'static, Any>,
    kind: DbKind,
) -> StoreResult<i64> {
    let sql = match kind {
        DbKind::Postgres => "SELECT term FROM monitor_lease WHERE id = 1 FOR SHARE",
        DbKind::Sqlite => "SELECT term FROM monitor_lease WHERE id = 1",
    };
    Ok(sqlx::query_scalar(sql).fetch_one(&mut **tx).await?)
}

/// One replica's candidacy for the monitor. Call [`Contender::lead`] on every tick.
#[derive(Debug)]
pub struct Contender {
    replica: Uuid,
    /// PostgreSQL: the connection that holds (or tries for) the advisory lock.
    conn: Option<sqlx::postgres::PgConnection>,
    term: Option<i64>,
}

impl Contender {
    /// A contender for `replica` that does not lead yet.
    pub fn new(replica: Uuid) -> Self {
        Self {
            replica,
            conn: None,
            term: None,
        }
    }

    /// The term this replica leads under, if it does.
    pub fn term(&self) -> Option<i64> {
        self.term
    }

    /// Checks the lease and tries to take it when free. Returns the term while this
    /// replica leads, `None` while another one does (or the database is unreachable:
    /// a replica that cannot check its lease stops acting on it).
    pub async fn lead(&mut self, store: &Store, now: i64) -> StoreResult<Option<i64>> {
        match store.kind {
            DbKind::Sqlite => {
                if self.term.is_none() {
                    self.term = Some(bump_term(store, self.replica, now).await?);
                }
                Ok(self.term)
            }
            DbKind::Postgres => {
                let result = self.lead_pg(store, now).await;
                if result.is_err() {
                    // The lock connection is in doubt: drop it, which releases the lock
                    // if the database still sees the session. Lead again only after a
                    // fresh acquisition (and a new term).
                    self.conn = None;
                    self.term = None;
                }
                result
            }
        }
    }

    async fn lead_pg(&mut self, store: &Store, now: i64) -> StoreResult<Option<i64>> {
        let conn = match &mut self.conn {
            Some(c) => c,
            None => self
                .conn
                .insert(sqlx::postgres::PgConnection::connect(&store.url.0).await?),
        };
        if let Some(held) = self.term {
            // Still ours? The query also proves the lock's session is alive.
            let current: i64 = sqlx::query_scalar("SELECT term FROM monitor_lease WHERE id = 1")
                .fetch_one(&mut *conn)
                .await?;
            if current == held {
                return Ok(Some(held));
            }
            tracing::warn!(held, current, "monitor term superseded; stepping down");
            let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(MONITOR_LOCK_KEY)
                .execute(&mut *conn)
                .await;
            self.term = None;
            return Ok(None);
        }
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(MONITOR_LOCK_KEY)
            .fetch_one(&mut *conn)
            .await?;
        if !got {
            return Ok(None);
        }
        let term: i64 = sqlx::query_scalar(
            "UPDATE monitor_lease SET term = term + 1, holder = $1, acquired_at = $2 \
             WHERE id = 1 RETURNING term",
        )
        .bind(self.replica.to_string())
        .bind(now)
        .fetch_one(&mut *conn)
        .await?;
        self.term = Some(term);
        Ok(Some(term))
    }

    /// Gives the lease up (shutdown): the next replica can take it at once instead of
    /// waiting for the database to notice a dead session.
    pub async fn resign(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(MONITOR_LOCK_KEY)
                .execute(&mut conn)
                .await;
            let _ = conn.close().await;
        }
        self.term = None;
    }
}

async fn bump_term(store: &Store, replica: Uuid, now: i64) -> StoreResult<i64> {
    let mut tx = store.write().await?;
    let term: i64 = sqlx::query_scalar(
        "UPDATE monitor_lease SET term = term + 1, holder = $1, acquired_at = $2 \
         WHERE id = 1 RETURNING term",
    )
    .bind(replica.to_string())
    .bind(now)
    .fetch_one(&mut *tx.tx)
    .await?;
    tx.commit().await?;
    Ok(term)
}

/// Who holds the monitor lease, for views: (term, holder replica, since).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseView {
    /// Current term.
    pub term: i64,
    /// Replica id of the holder, if any took it yet.
    pub holder: Option<String>,
    /// When the holder took it (Unix ms).
    pub acquired_at: Option<i64>,
}

impl Store {
    /// The monitor lease as stored.
    pub async fn monitor_lease(&self) -> StoreResult<LeaseView> {
        use sqlx::Row as _;
        let r = sqlx::query("SELECT term, holder, acquired_at FROM monitor_lease WHERE id = 1")
            .fetch_one(self.pool())
            .await?;
        Ok(LeaseView {
            term: r.try_get("term")?,
            holder: r.try_get("holder")?,
            acquired_at: r.try_get("acquired_at")?,
        })
    }

    /// The PostgreSQL backend pid holding the monitor's advisory lock in this database,
    /// if any (operators: `pg_terminate_backend` of it forces a hand-over; tests use it
    /// to cut a leader off).
    pub async fn monitor_lock_pid(&self) -> StoreResult<Option<i32>> {
        Ok(sqlx::query_scalar(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
             AND ((classid::bigint << 32) | objid::bigint) = $1",
        )
        .bind(MONITOR_LOCK_KEY)
        .fetch_optional(self.pool())
        .await?)
    }

    /// Cuts a PostgreSQL session (tests: a leader whose connection the network dropped).
    pub async fn terminate_backend(&self, pid: i32) -> StoreResult<bool> {
        Ok(sqlx::query_scalar("SELECT pg_terminate_backend($1)")
            .bind(pid)
            .fetch_one(self.pool())
            .await?)
    }
}
