//! The staging labels of a secret's versions, as Secrets Manager keeps them: a label is on one
//! version at most; moving `AWSCURRENT` puts `AWSPREVIOUS` on the version that had it; a version
//! without labels is deprecated, and the oldest deprecated versions go once a secret has more
//! than [`MAX_VERSIONS`].
use std::collections::BTreeMap;

use super::SecretsError;
use crate::store::secrets::SecretVersionMeta;

pub const CURRENT: &str = "AWSCURRENT";
pub const PREVIOUS: &str = "AWSPREVIOUS";
pub const PENDING: &str = "AWSPENDING";

/// The versions a secret keeps (deprecated ones beyond are deleted, oldest first).
pub const MAX_VERSIONS: usize = 100;
/// Labels on one version (the model's `SecretVersionStagesType`).
pub const MAX_STAGES: usize = 20;

type Versions = BTreeMap<String, SecretVersionMeta>;

/// The version holding `stage`.
pub fn holder<'a>(versions: &'a Versions, stage: &str) -> Option<&'a str> {
    versions
        .iter()
        .find(|(_, v)| v.stages.iter().any(|s| s == stage))
        .map(|(id, _)| id.as_str())
}

fn detach(versions: &mut Versions, stage: &str) {
    for v in versions.values_mut() {
        v.stages.retain(|s| s != stage);
    }
}

/// Puts `stage` on version `to` (which exists), taking it off the version that had it; when
/// `AWSCURRENT` moves, the version that had it becomes `AWSPREVIOUS`.
pub fn attach(versions: &mut Versions, stage: &str, to: &str) {
    let previous = holder(versions, stage).map(str::to_string);
    if previous.as_deref() == Some(to) {
        return;
    }
    detach(versions, stage);
    if stage == CURRENT {
        if let Some(previous) = previous {
            detach(versions, PREVIOUS);
            if let Some(v) = versions.get_mut(&previous) {
                v.stages.push(PREVIOUS.to_string());
            }
        }
    }
    if let Some(v) = versions.get_mut(to) {
        v.stages.push(stage.to_string());
    }
}

/// Checks the labels a client gives a new version.
pub fn check_stages(stages: &[String]) -> Result<(), SecretsError> {
    if stages.is_empty() || stages.len() > MAX_STAGES {
        return Err(SecretsError::InvalidParameter(format!(
            "VersionStages must name 1 to {MAX_STAGES} staging labels, got {}",
            stages.len()
        )));
    }
    for s in stages {
        if s.is_empty() || s.len() > 256 {
            return Err(SecretsError::InvalidParameter(format!(
                "a staging label must be 1 to 256 characters, got {}",
                s.len()
            )));
        }
    }
    Ok(())
}

/// Adds version `id` with `stages` (moving each label to it) and returns the deprecated
/// versions that go to keep at most [`MAX_VERSIONS`] (oldest first; never `id`).
pub fn add_version(
    versions: &mut Versions,
    id: &str,
    created_ms: u64,
    stages: &[String],
) -> Vec<String> {
    versions.insert(
        id.to_string(),
        SecretVersionMeta {
            created_ms,
            stages: Vec::new(),
        },
    );
    for stage in stages {
        attach(versions, stage, id);
    }
    prune(versions, id)
}

fn prune(versions: &mut Versions, keep: &str) -> Vec<String> {
    let excess = versions.len().saturating_sub(MAX_VERSIONS);
    if excess == 0 {
        return Vec::new();
    }
    let mut deprecated: Vec<(u64, String)> = versions
        .iter()
        .filter(|(id, v)| v.stages.is_empty() && id.as_str() != keep)
        .map(|(id, v)| (v.created_ms, id.clone()))
        .collect();
    deprecated.sort();
    let dropped: Vec<String> = deprecated
        .into_iter()
        .take(excess)
        .map(|(_, id)| id)
        .collect();
    for id in &dropped {
        versions.remove(id);
    }
    dropped
}

/// `UpdateSecretVersionStage`: moves `stage` to `move_to` and/or takes it off `remove_from`,
/// with Secrets Manager's checks (a label on a version must be removed from it by name when it
/// moves; `AWSCURRENT` can only move).
pub fn update_stage(
    versions: &mut Versions,
    stage: &str,
    move_to: Option<&str>,
    remove_from: Option<&str>,
) -> Result<(), SecretsError> {
    for id in move_to.iter().chain(remove_from.iter()) {
        if !versions.contains_key(*id) {
            return Err(SecretsError::NotFound(format!("version {id}")));
        }
    }
    let current = holder(versions, stage).map(str::to_string);
    match (move_to, remove_from) {
        (None, None) => Err(SecretsError::InvalidParameter(
            "UpdateSecretVersionStage needs MoveToVersionId, RemoveFromVersionId or both"
                .to_string(),
        )),
        (_, Some(from)) if current.as_deref() != Some(from) => {
            Err(SecretsError::InvalidParameter(format!(
                "the staging label {stage} is not attached to version {from}{}",
                match &current {
                    Some(c) => format!(" but to version {c}"),
                    None => String::new(),
                }
            )))
        }
        (Some(to), None) => match &current {
            Some(c) if c != to => Err(SecretsError::InvalidParameter(format!(
                "the staging label {stage} is attached to version {c}: name it in \
                 RemoveFromVersionId to move the label"
            ))),
            _ => {
                attach(versions, stage, to);
                Ok(())
            }
        },
        (Some(to), Some(_)) => {
            attach(versions, stage, to);
            Ok(())
        }
        (None, Some(_)) if stage == CURRENT => Err(SecretsError::InvalidParameter(
            "AWSCURRENT cannot be removed from a version, only moved to another \
             (MoveToVersionId)"
                .to_string(),
        )),
        (None, Some(_)) => {
            detach(versions, stage);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn versions(spec: &[(&str, u64, &[&str])]) -> Versions {
        spec.iter()
            .map(|(id, t, stages)| {
                (
                    id.to_string(),
                    SecretVersionMeta {
                        created_ms: *t,
                        stages: stages.iter().map(|s| s.to_string()).collect(),
                    },
                )
            })
            .collect()
    }

    fn stages_of(v: &Versions) -> Vec<(String, Vec<String>)> {
        v.iter()
            .map(|(id, m)| {
                let mut s = m.stages.clone();
                s.sort();
                (id.clone(), s)
            })
            .collect()
    }

    #[test]
    fn a_new_current_version_makes_the_old_one_previous_and_deprecates_the_one_before() {
        let mut v = versions(&[("a", 1, &[CURRENT])]);
        add_version(&mut v, "b", 2, &[CURRENT.to_string()]);
        assert_eq!(holder(&v, CURRENT), Some("b"));
        assert_eq!(holder(&v, PREVIOUS), Some("a"));
        add_version(&mut v, "c", 3, &[CURRENT.to_string()]);
        assert_eq!(
            stages_of(&v),
            [
                ("a".to_string(), vec![]),
                ("b".to_string(), vec![PREVIOUS.to_string()]),
                ("c".to_string(), vec![CURRENT.to_string()]),
            ]
        );
    }

    #[test]
    fn a_pending_version_leaves_current_alone_until_current_moves() {
        let mut v = versions(&[("a", 1, &[CURRENT]), ("z", 0, &[PREVIOUS])]);
        add_version(&mut v, "p", 2, &[PENDING.to_string()]);
        assert_eq!(holder(&v, CURRENT), Some("a"));
        assert_eq!(holder(&v, PREVIOUS), Some("z"));
        assert_eq!(holder(&v, PENDING), Some("p"));
        attach(&mut v, CURRENT, "p");
        assert_eq!(holder(&v, CURRENT), Some("p"));
        assert_eq!(holder(&v, PREVIOUS), Some("a"));
        // Attaching a label where it is already is no change.
        attach(&mut v, CURRENT, "p");
        assert_eq!(holder(&v, PREVIOUS), Some("a"));
    }

    #[test]
    fn the_oldest_deprecated_versions_go_beyond_the_limit() {
        let mut v = Versions::new();
        for i in 0..MAX_VERSIONS as u64 {
            add_version(&mut v, &format!("v{i:03}"), i, &[CURRENT.to_string()]);
        }
        assert_eq!(v.len(), MAX_VERSIONS);
        let dropped = add_version(&mut v, "new", 1000, &[CURRENT.to_string()]);
        assert_eq!(dropped, ["v000"]);
        assert_eq!(v.len(), MAX_VERSIONS);
        assert_eq!(holder(&v, PREVIOUS), Some("v099"));
    }

    #[test]
    fn update_stage_follows_secrets_managers_rules() {
        let mut v = versions(&[("a", 1, &[CURRENT]), ("b", 2, &[PENDING])]);
        // Moving a label that is on another version needs RemoveFromVersionId.
        let e = update_stage(&mut v, CURRENT, Some("b"), None).unwrap_err();
        assert!(matches!(e, SecretsError::InvalidParameter(_)), "{e}");
        let e = update_stage(&mut v, CURRENT, Some("b"), Some("b")).unwrap_err();
        assert!(e.to_string().contains("but to version a"), "{e}");
        let e = update_stage(&mut v, CURRENT, None, Some("a")).unwrap_err();
        assert!(e.to_string().contains("only moved"), "{e}");
        let e = update_stage(&mut v, CURRENT, Some("nope"), Some("a")).unwrap_err();
        assert!(matches!(e, SecretsError::NotFound(_)), "{e}");
        update_stage(&mut v, CURRENT, Some("b"), Some("a")).unwrap();
        assert_eq!(holder(&v, CURRENT), Some("b"));
        assert_eq!(holder(&v, PREVIOUS), Some("a"));
        update_stage(&mut v, PENDING, None, Some("b")).unwrap();
        assert_eq!(holder(&v, PENDING), None);
        // A label on no version can be attached without RemoveFromVersionId.
        update_stage(&mut v, "MINE", Some("a"), None).unwrap();
        assert_eq!(holder(&v, "MINE"), Some("a"));
        assert!(check_stages(&[]).is_err());
        assert!(check_stages(&["x".repeat(257)]).is_err());
    }
}
