//! User namespace remapping (Docker's `--userns-remap`): container uids and gids
//! `0..size` are host ids `host_uid..host_uid+size` and `host_gid..host_gid+size`.
//!
//! A node picks one mapping for all its containers: `default` (the `rswarm`
//! entry of `/etc/subuid` and `/etc/subgid`, else [`FALLBACK`]) or an explicit
//! `UID:GID:SIZE`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The name looked up in `/etc/subuid` and `/etc/subgid` for `default`.
pub const SUBID_NAME: &str = "rswarm";
/// The mapping `default` uses when the subid files have no `rswarm` entry.
pub const FALLBACK: IdMap = IdMap {
    host_uid: 100_000,
    host_gid: 100_000,
    size: 65_536,
};

/// Why a mapping is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdMapError {
    /// The text is not `default` or `UID:GID:SIZE`.
    #[error(
        "invalid user namespace mapping {value:?}: {reason} (expected `default` or UID:GID:SIZE, e.g. 100000:100000:65536)"
    )]
    Syntax {
        /// What was given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The numbers parse but do not make a usable mapping.
    #[error("invalid user namespace mapping {map}: {reason}")]
    Range {
        /// The mapping.
        map: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A subordinate id file could not be read.
    #[error("read {path}: {message}")]
    SubidFile {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
}

/// One contiguous mapping of container ids `0..size` to host ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IdMap {
    /// Host uid of container uid 0.
    pub host_uid: u32,
    /// Host gid of container gid 0.
    pub host_gid: u32,
    /// How many ids are mapped (uids and gids alike).
    pub size: u32,
}

impl IdMap {
    /// Parses `default` (resolved through `/etc/subuid` and `/etc/subgid`) or
    /// `UID:GID:SIZE`, and validates the result.
    pub fn resolve(value: &str) -> Result<IdMap, IdMapError> {
        if value.trim() == "default" {
            let read = |path: &str| match std::fs::read_to_string(path) {
                Ok(text) => Ok(Some(text)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(IdMapError::SubidFile {
                    path: Path::new(path).to_path_buf(),
                    message: e.to_string(),
                }),
            };
            let (uids, gids) = (read("/etc/subuid")?, read("/etc/subgid")?);
            return IdMap::default_from(uids.as_deref(), gids.as_deref());
        }
        value.parse()
    }

    /// The `default` mapping given the contents of `/etc/subuid` and
    /// `/etc/subgid` (`None`: no such file): the first `rswarm` range of each, the
    /// smaller size of the two; [`FALLBACK`] unless both files name `rswarm`.
    pub fn default_from(subuid: Option<&str>, subgid: Option<&str>) -> Result<IdMap, IdMapError> {
        let uids = subuid.and_then(|t| first_range(t, SUBID_NAME));
        let gids = subgid.and_then(|t| first_range(t, SUBID_NAME));
        let map = match (uids, gids) {
            (Some(u), Some(g)) => {
                let (u, g) = (u?, g?);
                IdMap {
                    host_uid: u.0,
                    host_gid: g.0,
                    size: u.1.min(g.1),
                }
            }
            _ => FALLBACK,
        };
        map.validate()?;
        Ok(map)
    }

    /// Checks the mapping leaves host root out and fits in 32 bits.
    pub fn validate(&self) -> Result<(), IdMapError> {
        let bad = |reason: &str| IdMapError::Range {
            map: self.to_string(),
            reason: reason.to_string(),
        };
        if self.size == 0 {
            return Err(bad("SIZE must be at least 1"));
        }
        if self.host_uid == 0 || self.host_gid == 0 {
            return Err(bad(
                "host id 0 would make container root the host's root; pick a range above 0",
            ));
        }
        // u32::MAX itself is the kernel's invalid id.
        if u64::from(self.host_uid) + u64::from(self.size) > u64::from(u32::MAX)
            || u64::from(self.host_gid) + u64::from(self.size) > u64::from(u32::MAX)
        {
            return Err(bad("the host range goes past 4294967294"));
        }
        Ok(())
    }

    /// The host uid of container uid `uid`, if mapped.
    pub fn host_uid_of(&self, uid: u32) -> Option<u32> {
        (uid < self.size).then(|| self.host_uid + uid)
    }

    /// The host gid of container gid `gid`, if mapped.
    pub fn host_gid_of(&self, gid: u32) -> Option<u32> {
        (gid < self.size).then(|| self.host_gid + gid)
    }

    /// A name for directories holding files shifted by this mapping:
    /// `<uid>-<gid>-<size>`.
    pub fn dir_suffix(&self) -> String {
        format!("{}-{}-{}", self.host_uid, self.host_gid, self.size)
    }

    /// The files written for process `pid` right after it unshared its user
    /// namespace, in order: `setgroups` stays `allow` (container root may change
    /// its groups, as under Docker), then `uid_map` and `gid_map`, each in one
    /// write as the kernel requires.
    pub fn proc_writes(&self, pid: u32) -> Vec<(PathBuf, String)> {
        let proc = Path::new("/proc").join(pid.to_string());
        vec![
            (proc.join("setgroups"), "allow".to_string()),
            (
                proc.join("uid_map"),
                format!("0 {} {}\n", self.host_uid, self.size),
            ),
            (
                proc.join("gid_map"),
                format!("0 {} {}\n", self.host_gid, self.size),
            ),
        ]
    }
}

impl fmt::Display for IdMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.host_uid, self.host_gid, self.size)
    }
}

impl FromStr for IdMap {
    type Err = IdMapError;

    /// Parses `UID:GID:SIZE` and validates it.
    fn from_str(value: &str) -> Result<IdMap, IdMapError> {
        let syntax = |reason: &str| IdMapError::Syntax {
            value: value.to_string(),
            reason: reason.to_string(),
        };
        let parts: Vec<&str> = value.trim().split(':').collect();
        let [uid, gid, size] = parts[..] else {
            return Err(syntax("not three numbers separated by ':'"));
        };
        let num = |what: &str, s: &str| {
            s.parse::<u32>().map_err(|_| {
                syntax(&format!(
                    "{what} {s:?} is not a number from 0 to 4294967295"
                ))
            })
        };
        let map = IdMap {
            host_uid: num("UID", uid)?,
            host_gid: num("GID", gid)?,
            size: num("SIZE", size)?,
        };
        map.validate()?;
        Ok(map)
    }
}

/// The first `name:start:count` line for `name` in a subid file, as (start, count).
fn first_range(text: &str, name: &str) -> Option<Result<(u32, u32), IdMapError>> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .find_map(|line| {
            let mut parts = line.split(':');
            if parts.next() != Some(name) {
                return None;
            }
            let (start, count) = (parts.next(), parts.next());
            let parsed = start
                .and_then(|s| s.trim().parse::<u32>().ok())
                .zip(count.and_then(|c| c.trim().parse::<u32>().ok()));
            Some(parsed.ok_or_else(|| IdMapError::Syntax {
                value: line.to_string(),
                reason: format!("malformed subordinate id entry for {name}"),
            }))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_mappings_parse_and_print_back() {
        let map: IdMap = "200000:300000:65536".parse().unwrap();
        assert_eq!(
            map,
            IdMap {
                host_uid: 200_000,
                host_gid: 300_000,
                size: 65_536
            }
        );
        assert_eq!(map.to_string(), "200000:300000:65536");
        assert_eq!(map.dir_suffix(), "200000-300000-65536");
        assert_eq!(IdMap::resolve(" 1:2:3 ").unwrap().size, 3);
    }

    #[test]
    fn bad_mappings_are_refused_with_the_reason() {
        let err = |s: &str| s.parse::<IdMap>().unwrap_err().to_string();
        assert!(
            err("100000:100000").contains("three numbers"),
            "{}",
            err("1:2")
        );
        assert!(err("a:1:2").contains("UID \"a\""));
        assert!(err("1:-1:2").contains("GID \"-1\""));
        assert!(err("1:1:99999999999").contains("SIZE"));
        assert!(err("1:1:0").contains("at least 1"));
        assert!(err("0:100000:65536").contains("host's root"));
        assert!(err("100000:0:65536").contains("host's root"));
        assert!(err("4294967000:1:65536").contains("past"));
        assert!(err("").contains("expected `default`"));
    }

    #[test]
    fn default_uses_the_rswarm_subid_entries_or_the_fallback() {
        let subuid = "# comment\nalice:100000:65536\nrswarm:231072:65536\nrswarm:1:2\n";
        let subgid = "rswarm:300000:70000\n";
        let map = IdMap::default_from(Some(subuid), Some(subgid)).unwrap();
        assert_eq!(
            map,
            IdMap {
                host_uid: 231_072,
                host_gid: 300_000,
                size: 65_536
            }
        );
        assert_eq!(
            IdMap::default_from(Some("alice:1:2\n"), Some(subgid)).unwrap(),
            FALLBACK
        );
        assert_eq!(IdMap::default_from(None, None).unwrap(), FALLBACK);
        let err = IdMap::default_from(Some("rswarm:x:1\n"), Some(subgid)).unwrap_err();
        assert!(err.to_string().contains("malformed"), "{err}");
        let err = IdMap::default_from(Some("rswarm:0:65536\n"), Some(subgid)).unwrap_err();
        assert!(err.to_string().contains("host's root"), "{err}");
    }

    #[test]
    fn ids_map_inside_the_range_only() {
        let map: IdMap = "100000:200000:10".parse().unwrap();
        assert_eq!(map.host_uid_of(0), Some(100_000));
        assert_eq!(map.host_uid_of(9), Some(100_009));
        assert_eq!(map.host_uid_of(10), None);
        assert_eq!(map.host_gid_of(3), Some(200_003));
        assert_eq!(map.host_gid_of(65_534), None);
    }

    #[test]
    fn proc_writes_allow_setgroups_then_map_uids_and_gids() {
        let map: IdMap = "100000:200000:65536".parse().unwrap();
        let writes = map.proc_writes(42);
        let shown: Vec<(String, &str)> = writes
            .iter()
            .map(|(p, s)| (p.display().to_string(), s.as_str()))
            .collect();
        assert_eq!(
            shown,
            vec![
                ("/proc/42/setgroups".to_string(), "allow"),
                ("/proc/42/uid_map".to_string(), "0 100000 65536\n"),
                ("/proc/42/gid_map".to_string(), "0 200000 65536\n"),
            ]
        );
    }
}
