//! Runs one async test body against SQLite and PostgreSQL.

/// `both_dbs!(name1, name2)` turns each `async fn name(db: Db)` into two tests,
/// `sqlite::name` and `postgres::name`.
#[macro_export]
macro_rules! both_dbs {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() { super::$name($crate::Db::Sqlite).await }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() { super::$name($crate::Db::Postgres).await }
            )*
        }
    };
}
