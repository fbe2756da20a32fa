//! IPv4 prefixes: the cluster pool, node subnets and task addresses.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use super::NetError;

/// An IPv4 prefix such as `10.231.1.0/24`; the address is kept as given, so the
/// same type carries a task's `10.231.1.2/24` (address plus on-link prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv4Net {
    addr: Ipv4Addr,
    prefix_len: u8,
}

impl Ipv4Net {
    /// A prefix from an address and a length of at most 32.
    pub fn new(addr: Ipv4Addr, prefix_len: u8) -> Result<Self, NetError> {
        if prefix_len > 32 {
            return Err(NetError::Config(format!(
                "prefix length {prefix_len} of {addr} is over 32"
            )));
        }
        Ok(Self { addr, prefix_len })
    }

    /// The address as given.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    fn mask(&self) -> u32 {
        // A shift by 32 overflows, hence the explicit zero-length case.
        if self.prefix_len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix_len))
        }
    }

    /// The network address (host bits cleared).
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask())
    }

    /// The same prefix with the host bits cleared.
    pub fn trunc(&self) -> Self {
        Self {
            addr: self.network(),
            prefix_len: self.prefix_len,
        }
    }

    /// Whether `ip` lies inside the prefix.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.network())
    }

    /// Whether `other` lies wholly inside this prefix.
    pub fn contains_net(&self, other: &Ipv4Net) -> bool {
        other.prefix_len >= self.prefix_len && self.contains(other.network())
    }

    /// The `n`-th host address (1 is the first usable one, the gateway of a node
    /// subnet); `None` past the last usable host.
    pub fn host(&self, n: u32) -> Option<Ipv4Addr> {
        let size = 1u64 << (32 - u32::from(self.prefix_len));
        // /31 and /32 have no network and broadcast addresses to skip.
        let usable = if self.prefix_len >= 31 {
            size
        } else {
            size - 2
        };
        let first = if self.prefix_len >= 31 { 0 } else { 1 };
        if n < first || u64::from(n - first) >= usable {
            return None;
        }
        Some(Ipv4Addr::from(u32::from(self.network()) + n))
    }

    /// The gateway of a node subnet: its first host.
    pub fn gateway(&self) -> Option<Ipv4Addr> {
        self.host(1)
    }

    /// The `index`-th sub-prefix of length `prefix_len` inside this prefix
    /// (how a pool is cut into node subnets), `None` past the end.
    pub fn subnet(&self, prefix_len: u8, index: u32) -> Option<Ipv4Net> {
        if prefix_len < self.prefix_len || prefix_len > 32 {
            return None;
        }
        let bits = u32::from(prefix_len - self.prefix_len);
        if bits < 32 && u64::from(index) >= 1u64 << bits {
            return None;
        }
        let step = 1u64 << (32 - u32::from(prefix_len));
        let start = u64::from(u32::from(self.network())) + u64::from(index) * step;
        let start = u32::try_from(start).ok()?;
        Some(Ipv4Net {
            addr: Ipv4Addr::from(start),
            prefix_len,
        })
    }
}

/// The MAC address of the interface holding `ip` on the overlay: a locally
/// administered unicast prefix and the four bytes of the address. Every node's
/// bridge (by its gateway) and every task's `eth0` get theirs from it, so the
/// MAC behind an address never changes: a bridge left to itself takes the
/// lowest MAC of its ports (a task veth joining or leaving would move the
/// gateway's MAC and black-hole the node's tasks for its peers until their
/// neighbour entries expired), and a task address used again by a new task
/// would otherwise answer with a MAC the node's neighbour entry does not know.
/// Addresses are unique in the cluster pool, so are these.
pub fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    let [a, b, c, d] = ip.octets();
    [0x02, 0x72, a, b, c, d]
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

impl FromStr for Ipv4Net {
    type Err = NetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, len) = s
            .split_once('/')
            .ok_or_else(|| NetError::Config(format!("{s:?} is not ADDRESS/PREFIX")))?;
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| NetError::Config(format!("{addr:?} in {s:?} is not an IPv4 address")))?;
        let len: u8 = len
            .parse()
            .map_err(|_| NetError::Config(format!("{len:?} in {s:?} is not a prefix length")))?;
        Ipv4Net::new(addr, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_prints() {
        assert_eq!(net("10.231.1.2/24").to_string(), "10.231.1.2/24");
        assert_eq!(net("10.231.1.2/24").trunc().to_string(), "10.231.1.0/24");
        assert!("10.0.0.0".parse::<Ipv4Net>().is_err());
        assert!("10.0.0.0/33".parse::<Ipv4Net>().is_err());
        assert!("10.0.0/8".parse::<Ipv4Net>().is_err());
    }

    #[test]
    fn hosts_and_gateway() {
        let n = net("10.231.1.0/24");
        assert_eq!(n.gateway(), Some(Ipv4Addr::new(10, 231, 1, 1)));
        assert_eq!(n.host(254), Some(Ipv4Addr::new(10, 231, 1, 254)));
        assert_eq!(n.host(255), None);
        assert_eq!(n.host(0), None);
        assert_eq!(net("10.0.0.4/31").host(0), Some(Ipv4Addr::new(10, 0, 0, 4)));
        assert!(n.contains(Ipv4Addr::new(10, 231, 1, 77)));
        assert!(!n.contains(Ipv4Addr::new(10, 231, 2, 1)));
    }

    #[test]
    fn an_address_gives_a_local_unicast_mac_of_its_own() {
        let mac = mac_for(Ipv4Addr::new(10, 231, 1, 1));
        assert_eq!(mac, [0x02, 0x72, 10, 231, 1, 1]);
        // Locally administered (bit 1), unicast (bit 0 clear).
        assert_eq!(mac[0] & 0b11, 0b10);
        assert_ne!(mac, mac_for(Ipv4Addr::new(10, 231, 1, 2)));
    }

    #[test]
    fn cuts_a_pool_into_subnets() {
        let pool = net("10.231.0.0/16");
        assert_eq!(pool.subnet(24, 0), Some(net("10.231.0.0/24")));
        assert_eq!(pool.subnet(24, 255), Some(net("10.231.255.0/24")));
        assert_eq!(pool.subnet(24, 256), None);
        assert_eq!(pool.subnet(8, 0), None);
        assert!(pool.contains_net(&net("10.231.7.0/24")));
        assert!(!pool.contains_net(&net("10.0.0.0/8")));
        assert_eq!(net("0.0.0.0/0").subnet(1, 1), Some(net("128.0.0.0/1")));
    }
}
