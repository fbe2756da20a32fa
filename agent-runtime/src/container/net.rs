//! Brings a network interface up with one rtnetlink request, so the container's
//! loopback works without `ip` in the image and without ioctls.

use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, recv, sendto, socket,
};
use std::os::fd::AsRawFd;

const RTM_NEWLINK: u16 = 16;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLMSG_ERROR: u16 = 2;
const IFF_UP: u32 = 1;

/// Why an interface could not be brought up.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A netlink or lookup system call failed.
    #[error("bring up {ifname}: {step}: {source}")]
    Sys {
        /// The interface.
        ifname: String,
        /// What was attempted.
        step: &'static str,
        /// The errno.
        source: nix::Error,
    },
    /// The kernel answered the request with something unexpected.
    #[error("bring up {ifname}: unexpected netlink reply ({0} bytes)", .len)]
    BadReply {
        /// The interface.
        ifname: String,
        /// Length of the reply.
        len: usize,
    },
}

/// The RTM_NEWLINK request setting IFF_UP on interface `index` (pure, for tests).
pub fn link_up_request(index: u32, seq: u32) -> [u8; 32] {
    let mut msg = [0u8; 32];
    msg[0..4].copy_from_slice(&32u32.to_ne_bytes());
    msg[4..6].copy_from_slice(&RTM_NEWLINK.to_ne_bytes());
    msg[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    msg[8..12].copy_from_slice(&seq.to_ne_bytes());
    // ifinfomsg: family 0, type 0, then index, flags and the change mask.
    msg[20..24].copy_from_slice(&index.to_ne_bytes());
    msg[24..28].copy_from_slice(&IFF_UP.to_ne_bytes());
    msg[28..32].copy_from_slice(&IFF_UP.to_ne_bytes());
    msg
}

/// Sets `ifname` up in the caller's network namespace.
pub fn link_up(ifname: &str) -> Result<(), NetError> {
    let sys = |step| {
        move |source| NetError::Sys {
            ifname: ifname.to_string(),
            step,
            source,
        }
    };
    let index = nix::net::if_::if_nametoindex(ifname).map_err(sys("lookup"))?;
    let sock = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )
    .map_err(sys("socket"))?;
    let req = link_up_request(index, 1);
    sendto(
        sock.as_raw_fd(),
        &req,
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )
    .map_err(sys("send"))?;
    let mut buf = [0u8; 512];
    let len = recv(sock.as_raw_fd(), &mut buf, MsgFlags::empty()).map_err(sys("recv"))?;
    // The ack is an NLMSG_ERROR whose error field (after the 16-byte header) is 0
    // on success or a negative errno.
    if len < 20 || u16::from_ne_bytes([buf[4], buf[5]]) != NLMSG_ERROR {
        return Err(NetError::BadReply {
            ifname: ifname.to_string(),
            len,
        });
    }
    let errno = i32::from_ne_bytes([buf[16], buf[17], buf[18], buf[19]]);
    if errno != 0 {
        return Err(NetError::Sys {
            ifname: ifname.to_string(),
            step: "RTM_NEWLINK",
            source: nix::Error::from_raw(-errno),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_sets_the_up_flag_on_the_index() {
        let req = link_up_request(1, 7);
        assert_eq!(u32::from_ne_bytes(req[0..4].try_into().unwrap()), 32);
        assert_eq!(
            u16::from_ne_bytes(req[4..6].try_into().unwrap()),
            RTM_NEWLINK
        );
        assert_eq!(u32::from_ne_bytes(req[8..12].try_into().unwrap()), 7);
        assert_eq!(u32::from_ne_bytes(req[20..24].try_into().unwrap()), 1);
        assert_eq!(u32::from_ne_bytes(req[24..28].try_into().unwrap()), IFF_UP);
        assert_eq!(u32::from_ne_bytes(req[28..32].try_into().unwrap()), IFF_UP);
    }
}
