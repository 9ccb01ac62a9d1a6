//! Execution roles (issue 17): named IAM policy documents that functions name as their `Role`.
//! One column family, `roles`: `name` -> JSON [`StoredRole`] (the policy as sent; it is compiled
//! again at start by whoever loads it). Writers take one lock (`writers`), so a create never
//! overwrites a role created meanwhile and an update never resurrects a deleted one. Every write
//! is synced: an answered create is durable.
//!
//! Roles are not tied to functions: a function may name a role that does not exist (yet), and
//! deleting a role leaves the functions naming it without credentials (as IAM: the role ARN is a
//! reference, not an ownership).
use std::ops::ControlFlow;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::db::{Batch, Database, Durability};
use super::error::StorageError;
use super::schema;
use super::table::{Json, Start, Table};
use super::writers::lock;

/// A role as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRole {
    pub name: String,
    /// The IAM policy document, as sent (validated before it is stored).
    pub policy: String,
    #[serde(default)]
    pub description: String,
    pub created_ms: u64,
    pub updated_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum RoleStoreError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("role `{0}` already exists: update it (`fnctl role update`) or delete it first")]
    Exists(String),
    #[error("role `{0}` not found: `fnctl role list` shows the roles")]
    NotFound(String),
}

/// Durable execution roles. Every method may block (disk, fsync).
pub trait RoleStore: Send + Sync + 'static {
    /// Stores a new role; [`RoleStoreError::Exists`] when the name is taken.
    fn create_role(&self, role: &StoredRole) -> Result<(), RoleStoreError>;
    /// Replaces the policy and description of an existing role (its `created_ms` is kept);
    /// returns the role as stored. [`RoleStoreError::NotFound`] when there is none.
    fn update_role(&self, role: &StoredRole) -> Result<StoredRole, RoleStoreError>;
    fn get_role(&self, name: &str) -> Result<Option<StoredRole>, RoleStoreError>;
    /// Every role, by name.
    fn list_roles(&self) -> Result<Vec<StoredRole>, RoleStoreError>;
    /// [`RoleStoreError::NotFound`] when there was none.
    fn delete_role(&self, name: &str) -> Result<(), RoleStoreError>;
}

/// [`RoleStore`] on the controller's RocksDB database.
pub struct RocksRoleStore {
    db: Database,
    writers: Mutex<()>,
}

impl RocksRoleStore {
    pub fn open(db: Database) -> RocksRoleStore {
        RocksRoleStore {
            db,
            writers: Mutex::new(()),
        }
    }

    fn table(&self) -> Table<'_, Json<StoredRole>> {
        self.db.table(schema::ROLES)
    }

    fn write(&self, batch: &Batch<'_>, op: &str) -> Result<(), RoleStoreError> {
        Ok(self.db.write(batch, Durability::Synced, op)?)
    }
}

impl RoleStore for RocksRoleStore {
    fn create_role(&self, role: &StoredRole) -> Result<(), RoleStoreError> {
        let _writers = lock(&self.writers);
        if self.table().contains(role.name.as_bytes())? {
            return Err(RoleStoreError::Exists(role.name.clone()));
        }
        let mut batch = Batch::new();
        self.table().put(&mut batch, role.name.as_bytes(), role)?;
        self.write(&batch, "create role")
    }

    fn update_role(&self, role: &StoredRole) -> Result<StoredRole, RoleStoreError> {
        let _writers = lock(&self.writers);
        let Some(old) = self.table().get(role.name.as_bytes())? else {
            return Err(RoleStoreError::NotFound(role.name.clone()));
        };
        let new = StoredRole {
            created_ms: old.created_ms,
            ..role.clone()
        };
        let mut batch = Batch::new();
        self.table().put(&mut batch, role.name.as_bytes(), &new)?;
        self.write(&batch, "update role")?;
        Ok(new)
    }

    fn get_role(&self, name: &str) -> Result<Option<StoredRole>, RoleStoreError> {
        Ok(self.table().get(name.as_bytes())?)
    }

    fn list_roles(&self) -> Result<Vec<StoredRole>, RoleStoreError> {
        let mut out = Vec::new();
        self.table().walk(Start::First, |e| {
            out.push(e.value()?);
            Ok::<_, StorageError>(ControlFlow::Continue(()))
        })?;
        Ok(out)
    }

    fn delete_role(&self, name: &str) -> Result<(), RoleStoreError> {
        let _writers = lock(&self.writers);
        if !self.table().contains(name.as_bytes())? {
            return Err(RoleStoreError::NotFound(name.to_string()));
        }
        let mut batch = Batch::new();
        self.table().delete(&mut batch, name.as_bytes());
        self.write(&batch, "delete role")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(name: &str, policy: &str, t: u64) -> StoredRole {
        StoredRole {
            name: name.into(),
            policy: policy.into(),
            description: String::new(),
            created_ms: t,
            updated_ms: t,
        }
    }

    #[test]
    fn roles_are_created_once_updated_listed_and_deleted_durably() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = RocksRoleStore::open(Database::open(dir.path()).unwrap());
            store.create_role(&role("b", "{}", 1)).unwrap();
            store.create_role(&role("a", "{}", 2)).unwrap();
            assert!(matches!(
                store.create_role(&role("a", "{\"x\":1}", 3)),
                Err(RoleStoreError::Exists(n)) if n == "a"
            ));
            let updated = store.update_role(&role("a", "{\"v\":2}", 9)).unwrap();
            assert_eq!((updated.created_ms, updated.updated_ms), (2, 9));
            assert!(matches!(
                store.update_role(&role("zz", "{}", 9)),
                Err(RoleStoreError::NotFound(_))
            ));
            store.delete_role("b").unwrap();
            assert!(matches!(
                store.delete_role("b"),
                Err(RoleStoreError::NotFound(_))
            ));
        }
        // Reopened: what was answered is there.
        let store = RocksRoleStore::open(Database::open(dir.path()).unwrap());
        let names: Vec<String> = store
            .list_roles()
            .unwrap()
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(names, ["a"]);
        assert_eq!(store.get_role("a").unwrap().unwrap().policy, "{\"v\":2}");
        assert!(store.get_role("b").unwrap().is_none());
    }
}
