//! The crash-safe metadata store for sandboxes, containers and images.
//!
//! **Why redb and not one file per record.** Records change together (a container and
//! the sandbox that lists it; an image and the layers it holds), and the kubelet
//! retries every call, so a half-applied change must be impossible. redb gives
//! multi-record ACID transactions in one file: a copy-on-write B-tree whose commit
//! flips a checksummed root with an `fsync` (`Durability::Immediate`), so a `kill -9`
//! or power loss at any instant leaves the last committed state readable — which is
//! what files + fsync + rename give per file, but across many records at once and
//! without a directory of temp files to clean up. It is pure Rust (no C toolchain)
//! and holds an exclusive lock, so two daemons can never share a root by mistake.
//!
//! Records are JSON values in one table per kind, keyed by id. The `meta` table holds
//! the schema version: an older store is migrated on open, a newer one refused.

mod records;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;
use serde::Serialize;

mod ids;
pub use ids::{new_id, now_nanos};
pub use records::{
    ContainerRecord, ContainerState, IdMapping, ImageRecord, MountRecord, Resources, SandboxRecord,
    SandboxState, UsernsMappings,
};

/// The schema this build writes. Bump it with a migration in [`Store::migrate`].
pub const SCHEMA_VERSION: u64 = 1;

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const SCHEMA_KEY: &str = "schema_version";

/// A kind of persisted record: one table, keyed by the record's id.
pub trait Record: Serialize + DeserializeOwned {
    /// Table name; part of the on-disk format.
    const TABLE: &'static str;
    fn id(&self) -> &str;
}

fn table<R: Record>() -> TableDefinition<'static, &'static str, &'static [u8]> {
    TableDefinition::new(R::TABLE)
}

/// Store failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create store directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("metadata store {path}: {source}")]
    Open { path: PathBuf, source: redb::Error },
    #[error("metadata store {path} has schema version {found}, newer than this build's {SCHEMA_VERSION}: refusing to touch it")]
    SchemaTooNew { path: PathBuf, found: u64 },
    #[error("metadata store: {0}")]
    Db(#[from] redb::Error),
    #[error("metadata store: corrupt {table} record {id}: {source}")]
    Decode {
        table: &'static str,
        id: String,
        source: serde_json::Error,
    },
    #[error("metadata store: cannot encode {table} record: {source}")]
    Encode {
        table: &'static str,
        source: serde_json::Error,
    },
    #[error("metadata store: the daemon is shutting down; the commit did not run")]
    ShuttingDown,
}

fn db_err(e: impl Into<redb::Error>) -> StoreError {
    StoreError::Db(e.into())
}

/// The open metadata database.
#[derive(Debug)]
pub struct Store {
    db: Database,
    path: PathBuf,
}

impl Store {
    /// Opens (creating if needed) the store at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| StoreError::Dir {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        let db = Database::create(path).map_err(|e| StoreError::Open {
            path: path.to_path_buf(),
            source: e.into(),
        })?;
        let store = Self {
            db,
            path: path.to_path_buf(),
        };
        store.migrate()?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn migrate(&self) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(db_err)?;
        {
            let mut meta = tx.open_table(META).map_err(db_err)?;
            let found = meta.get(SCHEMA_KEY).map_err(db_err)?.map(|v| v.value());
            match found {
                Some(v) if v > SCHEMA_VERSION => {
                    return Err(StoreError::SchemaTooNew {
                        path: self.path.clone(),
                        found: v,
                    })
                }
                // Version 1 is the first schema: nothing older to migrate from.
                Some(_) => {}
                None => {
                    meta.insert(SCHEMA_KEY, SCHEMA_VERSION).map_err(db_err)?;
                }
            }
            // Create every table up front so readers never see "table does not exist".
            tx.open_table(table::<SandboxRecord>()).map_err(db_err)?;
            tx.open_table(table::<ContainerRecord>()).map_err(db_err)?;
            tx.open_table(table::<ImageRecord>()).map_err(db_err)?;
        }
        tx.commit().map_err(db_err)
    }

    /// The schema version on disk.
    pub fn schema_version(&self) -> Result<u64, StoreError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let meta = tx.open_table(META).map_err(db_err)?;
        Ok(meta
            .get(SCHEMA_KEY)
            .map_err(db_err)?
            .map_or(0, |v| v.value()))
    }

    /// Runs `f` in one write transaction: all of its changes become durable together
    /// when it returns `Ok`, none of them if it fails.
    pub fn write<T>(
        &self,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let tx = self.db.begin_write().map_err(db_err)?;
        let out = f(&mut Tx { tx: &tx })?;
        tx.commit().map_err(db_err)?;
        Ok(out)
    }

    /// [`Store::write`] on tokio's blocking pool: a commit waits on fsync, which
    /// must not stall an async worker and every task queued on it.
    pub async fn write_async<T, F>(self: &Arc<Self>, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Tx<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let store = Arc::clone(self);
        crate::blocking::run(move || store.write(f))
            .await
            .unwrap_or(Err(StoreError::ShuttingDown))
    }

    /// [`Store::put`] off the async workers (see [`Store::write_async`]).
    pub async fn put_async<R: Record + Send + 'static>(
        self: &Arc<Self>,
        record: R,
    ) -> Result<(), StoreError> {
        self.write_async(move |tx| tx.put(&record)).await
    }

    /// [`Store::delete`] off the async workers (see [`Store::write_async`]).
    pub async fn delete_async<R: Record + 'static>(
        self: &Arc<Self>,
        id: &str,
    ) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.write_async(move |tx| tx.delete::<R>(&id)).await
    }

    /// Inserts or replaces one record, durably.
    pub fn put<R: Record>(&self, record: &R) -> Result<(), StoreError> {
        self.write(|tx| tx.put(record))
    }

    /// Removes one record; `false` when it was not there.
    pub fn delete<R: Record>(&self, id: &str) -> Result<bool, StoreError> {
        self.write(|tx| tx.delete::<R>(id))
    }

    pub fn get<R: Record>(&self, id: &str) -> Result<Option<R>, StoreError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(table::<R>()).map_err(db_err)?;
        let value = t.get(id).map_err(db_err)?;
        value.map(|v| decode::<R>(id, v.value())).transpose()
    }

    /// Every record of a kind, in id order.
    pub fn list<R: Record>(&self) -> Result<Vec<R>, StoreError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(table::<R>()).map_err(db_err)?;
        let mut out = Vec::new();
        for entry in t.iter().map_err(db_err)? {
            let (k, v) = entry.map_err(db_err)?;
            out.push(decode::<R>(k.value(), v.value())?);
        }
        Ok(out)
    }
}

/// An open write transaction (see [`Store::write`]).
#[allow(missing_debug_implementations)]
pub struct Tx<'a> {
    tx: &'a redb::WriteTransaction,
}

impl Tx<'_> {
    pub fn put<R: Record>(&mut self, record: &R) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(record).map_err(|source| StoreError::Encode {
            table: R::TABLE,
            source,
        })?;
        let mut t = self.tx.open_table(table::<R>()).map_err(db_err)?;
        t.insert(record.id(), bytes.as_slice()).map_err(db_err)?;
        Ok(())
    }

    pub fn delete<R: Record>(&mut self, id: &str) -> Result<bool, StoreError> {
        let mut t = self.tx.open_table(table::<R>()).map_err(db_err)?;
        let removed = t.remove(id).map_err(db_err)?.is_some();
        Ok(removed)
    }

    pub fn get<R: Record>(&self, id: &str) -> Result<Option<R>, StoreError> {
        let t = self.tx.open_table(table::<R>()).map_err(db_err)?;
        let value = t.get(id).map_err(db_err)?;
        value.map(|v| decode::<R>(id, v.value())).transpose()
    }
}

fn decode<R: Record>(id: &str, bytes: &[u8]) -> Result<R, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Decode {
        table: R::TABLE,
        id: id.to_string(),
        source,
    })
}

#[cfg(test)]
mod tests;
