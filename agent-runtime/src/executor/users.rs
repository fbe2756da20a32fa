//! Resolving a container's `user` (`UID[:GID]`, `NAME[:GROUP]`) against the image's
//! `/etc/passwd` and `/etc/group`, as Docker does.

use std::path::PathBuf;

/// The ids a process runs as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ids {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary groups the user belongs to.
    pub additional_gids: Vec<u32>,
}

/// Why a user could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    /// A name that neither file lists.
    #[error("unable to find {what} {name}: no matching entries in {file}")]
    Unknown {
        /// `user` or `group`.
        what: &'static str,
        /// The name given.
        name: String,
        /// The file searched.
        file: &'static str,
    },
}

/// The first of the image's layers (top-most first) that holds `relative`.
/// Whiteouts are not followed: a file deleted in an upper layer is rare for these.
fn find_in_layers(layers: &[PathBuf], relative: &str) -> Option<String> {
    layers
        .iter()
        .map(|dir| dir.join(relative))
        .find(|p| p.is_file())
        .and_then(|p| std::fs::read_to_string(p).ok())
}

/// Resolves `user` for an image whose layers are `layers` (top-most first). Empty
/// means root. Numbers need no files; names are looked up.
pub fn resolve(user: &str, layers: &[PathBuf]) -> Result<Ids, UserError> {
    let passwd = find_in_layers(layers, "etc/passwd").unwrap_or_default();
    let group = find_in_layers(layers, "etc/group").unwrap_or_default();
    resolve_with(user, &passwd, &group)
}

/// [`resolve`] over the contents of `/etc/passwd` and `/etc/group`.
pub fn resolve_with(user: &str, passwd: &str, group: &str) -> Result<Ids, UserError> {
    let (name, group_name) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let entry = |line: &str| -> Option<(String, u32, u32)> {
        let fields: Vec<&str> = line.split(':').collect();
        Some((
            fields.first()?.to_string(),
            fields.get(2)?.parse().ok()?,
            fields.get(3)?.parse().ok()?,
        ))
    };
    let users: Vec<(String, u32, u32)> = passwd.lines().filter_map(entry).collect();
    let (uid, mut gid, user_name) = if name.is_empty() {
        (0, 0, "root".to_string())
    } else if let Ok(uid) = name.parse::<u32>() {
        let found = users.iter().find(|(_, u, _)| *u == uid);
        (
            uid,
            found.map_or(0, |(_, _, g)| *g),
            found.map_or(String::new(), |(n, _, _)| n.clone()),
        )
    } else {
        let (n, u, g) =
            users
                .iter()
                .find(|(n, _, _)| n == name)
                .ok_or_else(|| UserError::Unknown {
                    what: "user",
                    name: name.to_string(),
                    file: "/etc/passwd",
                })?;
        (*u, *g, n.clone())
    };
    let groups: Vec<(String, u32, Vec<String>)> = group
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            Some((
                fields.first()?.to_string(),
                fields.get(2)?.parse().ok()?,
                fields
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .filter(|s| !s.is_empty())
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default(),
            ))
        })
        .collect();
    if let Some(g) = group_name {
        gid = match g.parse::<u32>() {
            Ok(id) => id,
            Err(_) => groups
                .iter()
                .find(|(n, _, _)| n == g)
                .map(|(_, id, _)| *id)
                .ok_or_else(|| UserError::Unknown {
                    what: "group",
                    name: g.to_string(),
                    file: "/etc/group",
                })?,
        };
    }
    let additional_gids = if user_name.is_empty() {
        Vec::new()
    } else {
        groups
            .iter()
            .filter(|(_, id, members)| *id != gid && members.contains(&user_name))
            .map(|(_, id, _)| *id)
            .collect()
    };
    Ok(Ids {
        uid,
        gid,
        additional_gids,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\napp:x:1000:1000::/home/app:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nnogroup:x:65534:\napp:x:1000:\nstaff:x:50:app,other\n";

    #[test]
    fn ids_names_and_groups() {
        let ids = |u: &str| resolve_with(u, PASSWD, GROUP);
        assert_eq!(
            ids("").unwrap(),
            Ids {
                uid: 0,
                gid: 0,
                additional_gids: vec![]
            }
        );
        assert_eq!(
            ids("app").unwrap(),
            Ids {
                uid: 1000,
                gid: 1000,
                additional_gids: vec![50]
            }
        );
        assert_eq!(
            ids("1000").unwrap().gid,
            1000,
            "a known uid takes its group"
        );
        assert_eq!(
            ids("4242").unwrap(),
            Ids {
                uid: 4242,
                gid: 0,
                additional_gids: vec![]
            }
        );
        assert_eq!(ids("nobody:staff").unwrap().gid, 50);
        assert_eq!(ids("1000:7").unwrap().gid, 7);
        let err = ids("ghost").unwrap_err().to_string();
        assert_eq!(
            err,
            "unable to find user ghost: no matching entries in /etc/passwd"
        );
        assert!(
            ids("app:ghosts")
                .unwrap_err()
                .to_string()
                .contains("group ghosts")
        );
    }

    #[test]
    fn the_top_most_layer_with_the_file_wins() {
        let dir = tempfile::tempdir().unwrap();
        let (top, bottom) = (dir.path().join("top"), dir.path().join("bottom"));
        for (layer, passwd) in [(&top, "app:x:2000:2000::/:/bin/sh\n"), (&bottom, PASSWD)] {
            std::fs::create_dir_all(layer.join("etc")).unwrap();
            std::fs::write(layer.join("etc/passwd"), passwd).unwrap();
        }
        let layers = vec![top, bottom];
        assert_eq!(resolve("app", &layers).unwrap().uid, 2000);
        assert!(
            resolve("app", &[])
                .unwrap_err()
                .to_string()
                .contains("user app")
        );
    }
}
