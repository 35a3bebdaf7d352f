//! The names pods and containers hold (one record per full name, as CRI-O reserves
//! them), kept in memory under the names lock so a reservation looks one name up
//! instead of reading every record. Loaded from the store on first use; an entry
//! whose record is gone is dropped when it is found. A name can also be claimed
//! before its record is committed (CreateContainer makes the bundle first): a claim
//! holds the name without a record until it is settled.

use std::collections::{HashMap, HashSet};

use crate::error::CriError;
use crate::store::{ContainerRecord, Record, SandboxRecord, Store};

/// Full name -> id, per kind of record.
#[derive(Debug, Default)]
pub(crate) struct NameIndex {
    loaded: bool,
    pods: HashMap<String, String>,
    containers: HashMap<String, String>,
    /// Ids holding a name by claim: their records are not committed yet.
    claimed: HashSet<String>,
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
        if self.claimed.contains(&id) {
            return Ok(Some(id));
        }
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

    /// Notes that `record`, not committed yet, holds its name until
    /// [`NameIndex::settle`] says whether its record landed.
    pub(crate) fn claim<R: Named>(&mut self, record: &R) {
        self.hold(record);
        self.claimed.insert(record.id().to_string());
    }

    /// Ends the claim of record `id`: from now on its name is held as long as its
    /// record is in the store, and free if it was never committed (or is gone).
    pub(crate) fn settle(&mut self, id: &str) {
        self.claimed.remove(id);
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

    #[test]
    fn a_claim_holds_its_name_until_settled() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = Store::open(&dir.path().join("store.db")).expect("store");
        let mut index = NameIndex::default();
        let (web, db) = (pod("p1", "k8s_POD_web"), pod("p2", "k8s_POD_db"));
        index.claim(&web);
        index.claim(&db);
        for pod in [&web, &db] {
            assert_eq!(
                index
                    .holder::<SandboxRecord>(&store, &pod.full_name)
                    .expect("lookup"),
                Some(pod.id.clone()),
                "held without a record"
            );
        }
        // Committed: held by the record from now on.
        store.put(&web).expect("put");
        index.settle("p1");
        assert_eq!(
            index
                .holder::<SandboxRecord>(&store, "k8s_POD_web")
                .expect("lookup"),
            Some("p1".to_string())
        );
        // Not committed: free again.
        index.settle("p2");
        assert_eq!(
            index
                .holder::<SandboxRecord>(&store, "k8s_POD_db")
                .expect("lookup"),
            None
        );
    }
}
