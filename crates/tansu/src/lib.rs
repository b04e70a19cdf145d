//! The local broker: Tansu 0.6.0 with its SQLite storage engine, as
//! `make up` and the tests run it.
//!
//! Tansu 0.6's schema indexes the `header` table (one row per record
//! header) by nothing, and its fetch reads each fetched record's headers
//! with a query that scans that whole table (`header_fetch.sql`: `SCAN h`).
//! Every result the bridge writes carries a `traceparent` header, so the
//! table grows by one row per event and each fetch costs more than the one
//! before: 20,000 events produced three times in a row ran at 5,392, 465
//! and 50 events/s, and in the third round a produce waited so long that
//! librdkafka's idempotent producer timed its messages out and bumped its
//! epoch; Tansu's idempotence check finds no row for an epoch it never
//! issued and panics (`lite.rs:503`), killing its storage task for good.
//! With [`index_store`] the same three rounds ran at 10,348, 5,945 and
//! 8,278 events/s (NOTES.md, "The broker under rounds").

use anyhow::{Context, Result};
use std::path::Path;
use std::time::Duration;

/// The store's file name, in the broker's working directory.
pub const STORE: &str = "tansu.db";

/// `tansu broker` listening on `url` (`tcp://host:port`), SQLite storage in
/// the working directory.
pub fn args(url: &str) -> [&str; 7] {
    [
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        "sqlite://tansu.db",
    ]
}

/// Adds the index Tansu's fetch needs to the store at `db`, once Tansu
/// has made its tables (it does at start, before it listens). Tansu's own
/// schema is `create ... if not exists`, so the index stays across
/// restarts; on a store that already has it this does nothing. Returns
/// whether the table was there to index.
pub fn index_store(db: &Path) -> Result<bool> {
    let conn = rusqlite::Connection::open(db)
        .with_context(|| format!("opening the broker's store {}", db.display()))?;
    // Tansu may be writing: wait for its lock instead of failing.
    conn.busy_timeout(Duration::from_secs(30))?;
    let has_header: bool = conn.query_row(
        "select count(*) from sqlite_master where type = 'table' and name = 'header'",
        [],
        |row| row.get::<_, i64>(0).map(|n| n > 0),
    )?;
    if has_header {
        conn.execute(
            "create index if not exists aies_header_record on header (topition, offset_id)",
            [],
        )
        .context("indexing the broker's header table")?;
    }
    Ok(has_header)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tansu 0.6's `header` table (tansu-storage `ddl/040-header.sql`).
    const HEADER: &str = "create table header (topition integer, offset_id integer, \
                          k blob, v blob)";

    #[test]
    fn the_header_table_is_indexed_once_it_exists() {
        let dir = std::env::temp_dir().join(format!("aies-tansu-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join(STORE);
        let _ = std::fs::remove_file(&db);
        assert!(!index_store(&db).unwrap(), "no table yet");
        rusqlite::Connection::open(&db)
            .unwrap()
            .execute(HEADER, [])
            .unwrap();
        assert!(index_store(&db).unwrap());
        assert!(index_store(&db).unwrap(), "a second time is a no-op");
        let conn = rusqlite::Connection::open(&db).unwrap();
        let plan: String = conn
            .query_row(
                "explain query plan select k, v from header where topition = 1 and offset_id = 2",
                [],
                |row| row.get(3),
            )
            .unwrap();
        assert!(plan.contains("aies_header_record"), "{plan}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
