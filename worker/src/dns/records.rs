//! The names the node answers.

use std::collections::HashMap;
use std::net::Ipv4Addr;

/// The names the node answers, replaced as a whole on every endpoint change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Records {
    /// Lower-case name (no trailing dot, e.g. "web" or "tasks.web") -> IPv4 addresses.
    pub names: HashMap<String, Vec<Ipv4Addr>>,
}

impl Records {
    /// Sets the addresses of `name` (lower-cased, one trailing dot dropped),
    /// replacing any it had. An empty list still makes the name known: A queries
    /// for it get NOERROR with no answers instead of being forwarded.
    pub fn insert(&mut self, name: &str, addrs: Vec<Ipv4Addr>) {
        self.names.insert(normalize(name), addrs);
    }

    /// The addresses of `name`, matched as [`Records::insert`] stores it.
    pub fn get(&self, name: &str) -> Option<&[Ipv4Addr]> {
        self.names.get(&normalize(name)).map(Vec::as_slice)
    }
}

/// `name` as the map's keys are: lower-case, without a trailing dot.
pub(super) fn normalize(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}
