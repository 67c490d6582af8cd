//! Durable state on SQLite or PostgreSQL through one code path (sqlx `Any`).
//!
//! The same migrations and the same SQL run on both databases: ids are TEXT, times are
//! BIGINT milliseconds, flags BIGINT 0/1. Every multi-row change runs in a write
//! transaction from [`Store::write`]; on SQLite writers are additionally serialised in
//! process (and start with `BEGIN IMMEDIATE`) so a read-then-write transaction can never
//! fail with a busy snapshot, and on PostgreSQL row locks taken by conditional `UPDATE`s
//! serialise exactly the rows that race (a user's slot counter, a node's version).
//! Invariants live in constraints (see `migrations/0001_init.sql`) as well as in code.

pub mod audit;
pub mod backup;
pub mod bus;
pub mod devices;
pub mod lease;
pub mod nodes;
pub mod regions;
pub mod routing;
pub mod users;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{Any, AnyPool, Executor, Transaction};
use tokio::sync::{Mutex, MutexGuard};

/// Which database is behind the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbKind {
    /// SQLite file (WAL, synchronous=FULL, foreign keys on).
    Sqlite,
    /// PostgreSQL server.
    Postgres,
}

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed or refused a statement.
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    /// Migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored value could not be decoded (corruption or a bug).
    #[error("corrupt stored value in {0}")]
    Corrupt(&'static str),
    /// A monitor write under a term that is no longer the current one: another replica
    /// took the monitor over, and this one must stop writing.
    #[error("fenced: this replica's monitor term {held} was superseded by term {current}")]
    Fenced {
        /// The term this writer holds.
        held: i64,
        /// The term in the database.
        current: i64,
    },
}

impl StoreError {
    /// Whether this is a unique-constraint violation.
    pub fn is_unique_violation(&self) -> bool {
        match self {
            Self::Db(sqlx::Error::Database(e)) => e.is_unique_violation(),
            _ => false,
        }
    }
}

/// Result of store operations.
pub type StoreResult<T> = Result<T, StoreError>;

/// The database handle. Cloning is cheap and shares the pool (and, on SQLite, the
/// in-process writer lock); [`Store::fenced`] makes a clone whose writes are fenced.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    kind: DbKind,
    sqlite_writer: Option<Arc<Mutex<()>>>,
    tuning: Tuning,
    url: Redacted,
    /// When set, every write transaction first checks that the monitor lease is still at
    /// this term (see [`lease`]).
    fence: Option<i64>,
}

/// The database URL (it may hold a password): never printed.
#[derive(Clone)]
struct Redacted(String);

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[database url]")
    }
}

/// The routing settings the store's placement decisions use.
#[derive(Debug, Clone, Default)]
pub struct Tuning {
    /// Score weights, link default, reserve, reassignment limit.
    pub placement: crate::config::PlacementConfig,
    /// Health thresholds (the offline grace decides whether a heartbeat is fresh).
    pub health: crate::config::HealthConfig,
}

/// A write transaction; on SQLite it also holds the in-process writer lock.
pub struct WriteTx<'a> {
    /// The transaction; use `&mut *tx.tx` as an executor.
    pub tx: Transaction<'static, Any>,
    _guard: Option<MutexGuard<'a, ()>>,
}

impl WriteTx<'_> {
    /// Commits.
    pub async fn commit(self) -> StoreResult<()> {
        self.tx.commit().await?;
        Ok(())
    }
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

impl Store {
    /// Opens (creating if needed) the database and runs migrations.
    pub async fn open(url: &str) -> StoreResult<Self> {
        sqlx::any::install_default_drivers();
        let kind = if url.starts_with("sqlite:") {
            DbKind::Sqlite
        } else {
            DbKind::Postgres
        };
        let url = if kind == DbKind::Sqlite && !url.contains("mode=") {
            format!("{url}{}mode=rwc", if url.contains('?') { '&' } else { '?' })
        } else {
            url.to_string()
        };
        let opts = AnyConnectOptions::from_str(&url)?;
        let redacted = Redacted(url.clone());
        let pool = AnyPoolOptions::new()
            .max_connections(if kind == DbKind::Sqlite { 8 } else { 16 })
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if kind == DbKind::Postgres {
                        // Prepared statements are planned per execution: a generic plan cached
                        // while a table was small (a fresh install) would otherwise stay a
                        // full scan after the table grew, until the next ANALYZE.
                        conn.execute("SET plan_cache_mode = force_custom_plan")
                            .await?;
                    }
                    if kind == DbKind::Sqlite {
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA synchronous = FULL").await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                        conn.execute("PRAGMA busy_timeout = 10000").await?;
                    }
                    Ok(())
                })
            })
            .connect_with(opts)
            .await?;
        MIGRATOR.run(&pool).await?;
        let store = Self {
            pool,
            kind,
            sqlite_writer: (kind == DbKind::Sqlite).then(|| Arc::new(Mutex::new(()))),
            tuning: Tuning::default(),
            url: redacted,
            fence: None,
        };
        store.install_append_only_guards().await?;
        Ok(store)
    }

    /// Sets the routing settings (before the store is shared).
    pub fn with_tuning(mut self, tuning: Tuning) -> Self {
        self.tuning = tuning;
        self
    }

    /// The routing settings.
    pub fn tuning(&self) -> &Tuning {
        &self.tuning
    }

    /// Database kind.
    pub fn kind(&self) -> DbKind {
        self.kind
    }

    /// The pool, for reads.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// A handle whose write transactions are refused with [`StoreError::Fenced`] unless
    /// the monitor lease is still at `term`. The monitor writes only through one.
    pub fn fenced(&self, term: i64) -> Self {
        Self {
            fence: Some(term),
            ..self.clone()
        }
    }

    /// Starts a write transaction (fenced, for a [`Store::fenced`] handle).
    pub async fn write(&self) -> StoreResult<WriteTx<'_>> {
        let mut w = match &self.sqlite_writer {
            Some(lock) => {
                let guard = lock.lock().await;
                let tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
                WriteTx {
                    tx,
                    _guard: Some(guard),
                }
            }
            None => WriteTx {
                tx: self.pool.begin().await?,
                _guard: None,
            },
        };
        if let Some(held) = self.fence {
            let current = lease::current_term(&mut w.tx, self.kind).await?;
            if current != held {
                // Dropping the transaction rolls it back: nothing was written.
                return Err(StoreError::Fenced { held, current });
            }
        }
        Ok(w)
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Makes `audit_events` append-only in the database itself: updates and deletes are
    /// refused by a trigger. Installed at every start (idempotent), because trigger
    /// syntax is the one place where SQLite and PostgreSQL differ.
    async fn install_append_only_guards(&self) -> StoreResult<()> {
        match self.kind {
            DbKind::Sqlite => {
                for sql in [
                    "CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit_events \
                     BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END",
                    "CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit_events \
                     BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END",
                ] {
                    self.pool.execute(sql).await?;
                }
            }
            DbKind::Postgres => {
                self.pool
                    .execute(
                        "CREATE OR REPLACE FUNCTION clawn_audit_append_only() RETURNS trigger AS $$ \
                         BEGIN RAISE EXCEPTION 'audit_events is append-only'; END; $$ LANGUAGE plpgsql",
                    )
                    .await?;
                self.pool
                    .execute(
                        "CREATE OR REPLACE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit_events \
                         FOR EACH ROW EXECUTE FUNCTION clawn_audit_append_only()",
                    )
                    .await?;
            }
        }
        Ok(())
    }

    /// Whether the database answers (health checks).
    pub async fn ping(&self) -> StoreResult<()> {
        sqlx::query_scalar::<_, i64>("SELECT 1")
            .fetch_one(&self.pool)
            .await?;
        Ok(())
    }

    /// Reads a setting.
    pub async fn setting(&self, key: &str) -> StoreResult<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
                .bind(key)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Writes a setting.
    pub async fn set_setting(&self, key: &str, value: &str) -> StoreResult<()> {
        let mut tx = self.write().await?;
        sqlx::query("DELETE FROM settings WHERE key = $1")
            .bind(key)
            .execute(&mut *tx.tx)
            .await?;
        sqlx::query("INSERT INTO settings (key, value) VALUES ($1, $2)")
            .bind(key)
            .bind(value)
            .execute(&mut *tx.tx)
            .await?;
        tx.commit().await
    }
}

/// Converts a stored UUID string.
pub fn uuid(s: &str, what: &'static str) -> StoreResult<uuid::Uuid> {
    uuid::Uuid::parse_str(s).map_err(|_| StoreError::Corrupt(what))
}

/// Converts a stored non-negative count.
pub fn count(v: i64) -> u32 {
    u32::try_from(v.max(0)).unwrap_or(u32::MAX)
}
