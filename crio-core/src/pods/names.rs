//! The names pods and containers hold (one record per full name, as CRI-O reserves
//! them), kept in memory under the names lock so a reservation looks one name up
//! instead of reading every record. Loaded from the store on first use; an entry
//! whose record is gone is dropped when it is found.

use std::collections::HashMap;

use crate::error::CriError;
use crate::store::{ContainerRecord, Record, SandboxRecord, Store};

/// Full name -> id, per kind of record.
#[derive(Debug, Default)]
pub(crate) struct NameIndex {
    loaded: bool,
    pods: HashMap<String, String>,
    containers: HashMap<String, String>,
}

/// A record that holds a name.
pub(crate) trait Named: Record {
    fn full_name(&self) -> &str;
    fn names(index: &mut NameIndex) -> &mut HashMap<String, String>;
}

impl Named for SandboxRecord {
    fn full_name(&self) -> &str {
        &self.full_name
    }
    fn names(index: &mut NameIndex) -> &mut HashMap<String, String> {
        &mut index.pods
    }
}

impl Named for ContainerRecord {
    fn full_name(&self) -> &str {
        &self.full_name
    }
    fn names(index: &mut NameIndex) -> &mut HashMap<String, String> {
        &mut index.containers
    }
}

impl NameIndex {
    /// The id of the record of kind `R` holding `name`, if one does.
    pub(crate) fn holder<R: Named>(
        &mut self,
        store: &Store,
        name: &str,
    ) -> Result<Option<String>, CriError> {
        self.load(store)?;
        let Some(id) = R::names(self).get(name).cloned() else {
            return Ok(None);
        };
        match store.get::<R>(&id)? {
            Some(record) if record.full_name() == name => Ok(Some(id)),
            // Removed since: the name is free.
            _ => {
                R::names(self).remove(name);
                Ok(None)
            }
        }
    }

    /// Notes that `record`, just committed, holds its name.
    pub(crate) fn hold<R: Named>(&mut self, record: &R) {
        R::names(self).insert(record.full_name().to_string(), record.id().to_string());
    }

    fn load(&mut self, store: &Store) -> Result<(), CriError> {
        if self.loaded {
            return Ok(());
        }
        for pod in store.list::<SandboxRecord>()? {
            self.hold(&pod);
        }
        for container in store.list::<ContainerRecord>()? {
            self.hold(&container);
        }
        self.loaded = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(id: &str, name: &str) -> SandboxRecord {
        SandboxRecord {
            id: id.into(),
            full_name: name.into(),
            ..Default::default()
        }
    }

    #[test]
    fn names_come_from_the_store_and_go_with_their_records() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = Store::open(&dir.path().join("store.db")).expect("store");
        store.put(&pod("p1", "k8s_POD_web")).expect("put");
        let mut index = NameIndex::default();
        assert_eq!(
            index
                .holder::<SandboxRecord>(&store, "k8s_POD_web")
                .expect("lookup"),
            Some("p1".to_string())
        );
        // The same name among containers is another name.
        assert_eq!(
            index
                .holder::<ContainerRecord>(&store, "k8s_POD_web")
                .expect("lookup"),
            None
        );
        let p2 = pod("p2", "k8s_POD_db");
        store.put(&p2).expect("put");
        index.hold(&p2);
        assert_eq!(
            index
                .holder::<SandboxRecord>(&store, "k8s_POD_db")
                .expect("lookup"),
            Some("p2".to_string())
        );
        store.delete::<SandboxRecord>("p1").expect("delete");
        assert_eq!(
            index
                .holder::<SandboxRecord>(&store, "k8s_POD_web")
                .expect("lookup"),
            None,
            "a removed record frees its name"
        );
    }
}
