//! The SQL of `clawn-server backup` and `restore`: an online, consistent copy of a SQLite
//! database (`VACUUM INTO`) and the integrity check of a copy before it is restored. Both
//! open their own connection, so they run beside a serving process and never migrate.

use std::path::Path;
use std::str::FromStr as _;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions as _, Connection as _};

use super::StoreResult;

async fn connect(options: SqliteConnectOptions) -> StoreResult<SqliteConnection> {
    Ok(options
        .create_if_missing(false)
        .busy_timeout(Duration::from_secs(10))
        .connect()
        .await?)
}

/// Writes a consistent copy of the SQLite database at `url` to `dest`, which must not
/// exist or be empty. A read transaction of its own: the serving process keeps writing.
pub async fn vacuum_into(url: &str, dest: &Path) -> StoreResult<()> {
    let mut conn = connect(SqliteConnectOptions::from_str(url)?).await?;
    sqlx::query("VACUUM INTO $1")
        .bind(dest.to_string_lossy().into_owned())
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(())
}

/// `PRAGMA quick_check` of the SQLite file at `path`, read-only: `"ok"` when intact.
pub async fn quick_check(path: &Path) -> StoreResult<String> {
    let options = SqliteConnectOptions::new().filename(path).read_only(true);
    let mut conn = connect(options).await?;
    let verdict: String = sqlx::query_scalar("PRAGMA quick_check")
        .fetch_one(&mut conn)
        .await?;
    conn.close().await?;
    Ok(verdict)
}

/// Moves every node's desired-state version of the SQLite copy at `path` forward by `by`,
/// so the first snapshot after a restore is newer than anything a node applied after the
/// backup was taken (nodes refuse older versions). Returns the nodes moved.
pub async fn advance_node_versions(path: &Path, by: u64) -> StoreResult<u64> {
    let options = SqliteConnectOptions::new().filename(path);
    let mut conn = connect(options).await?;
    let by = i64::try_from(by).unwrap_or(i64::MAX);
    let done = sqlx::query("UPDATE nodes SET version = version + $1")
        .bind(by)
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(done.rows_affected())
}
