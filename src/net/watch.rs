//! What the kernel tells us without being asked: interfaces and addresses coming and going
//! (rtnetlink), and changes to the nf_tables ruleset (nfnetlink), so that the daemon follows
//! them at once instead of re-reading on a timer.
//!
//! Both are non-blocking netlink sockets subscribed to multicast groups (`netlink-sys`; see
//! the README for why that crate). The daemon's event thread waits on them with `poll(2)` and
//! calls [`LinkWatch::drain`] / [`RulesetWatch::drain`] when one is readable. Nothing here
//! decodes more than it needs: any link or address message means "re-read the interfaces"
//! (the list itself comes from the same place as at start); a ruleset message matters when
//! it concerns the table the chain lives in.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use netlink_sys::{protocols, Socket, SocketAddr};

/// rtnetlink multicast groups (linux/rtnetlink.h, `enum rtnetlink_groups`).
const RTNLGRP_LINK: u32 = 1;
const RTNLGRP_IPV4_IFADDR: u32 = 5;
const RTNLGRP_IPV6_IFADDR: u32 = 9;
/// nfnetlink's nf_tables group (linux/netfilter/nfnetlink.h).
const NFNLGRP_NFTABLES: u32 = 7;
/// nf_tables' subsystem id, in the high byte of a message type.
const NFNL_SUBSYS_NFTABLES: u16 = 10;
/// NFT_MSG_NEWGEN: the end of every ruleset transaction; names no table.
const NFT_MSG_NEWGEN: u16 = 16;
/// Room for a burst of notifications between two reads.
const RECV_BUFFER: usize = 1 << 20;

/// What a drained socket says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum News {
    /// Nothing that concerns us.
    Nothing,
    /// Something changed: look again.
    Changed,
    /// The kernel dropped notifications (ENOBUFS): what we know may be stale, resync.
    Lost,
}

fn open(protocol: isize) -> io::Result<Socket> {
    let mut socket = Socket::new(protocol)?;
    socket.bind(&SocketAddr::new(0, 0))?;
    socket.set_non_blocking(true)?;
    // A burst (a DHCP renewal, `iptables-restore` of a large ruleset) fits.
    let _ = socket.set_rx_buf_sz(RECV_BUFFER);
    Ok(socket)
}

/// Reads every pending datagram, giving each to `each`; ENOBUFS makes the result `Lost`.
fn drain(socket: &Socket, buf: &mut Vec<u8>, mut each: impl FnMut(&[u8]) -> bool) -> News {
    let mut news = News::Nothing;
    loop {
        buf.clear();
        match socket.recv(buf, 0) {
            Ok(0) => return news,
            Ok(_) => {
                if news == News::Nothing && each(buf) {
                    news = News::Changed;
                }
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => news = News::Lost,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // WouldBlock: drained. Any other error: nothing more to read now.
            Err(_) => return news,
        }
    }
}

/// Links and addresses (IPv4 and IPv6) appearing, changing or going away.
pub struct LinkWatch {
    socket: Socket,
    buf: Vec<u8>,
}

impl LinkWatch {
    pub fn open() -> io::Result<LinkWatch> {
        let socket = open(protocols::NETLINK_ROUTE)?;
        for group in [RTNLGRP_LINK, RTNLGRP_IPV4_IFADDR, RTNLGRP_IPV6_IFADDR] {
            socket.add_membership(group)?;
        }
        Ok(LinkWatch {
            socket,
            buf: Vec::with_capacity(64 * 1024),
        })
    }

    /// Reads what arrived: any message is a change.
    pub fn drain(&mut self) -> News {
        drain(&self.socket, &mut self.buf, |_| true)
    }
}

impl AsFd for LinkWatch {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

/// nf_tables ruleset changes that touch one table (iptables-nft's `filter`, in any family).
pub struct RulesetWatch {
    socket: Socket,
    buf: Vec<u8>,
    table: String,
}

impl RulesetWatch {
    pub fn open(table: &str) -> io::Result<RulesetWatch> {
        let socket = open(protocols::NETLINK_NETFILTER)?;
        socket.add_membership(NFNLGRP_NFTABLES)?;
        Ok(RulesetWatch {
            socket,
            buf: Vec::with_capacity(64 * 1024),
            table: table.to_string(),
        })
    }

    /// Reads what arrived: a change when some message concerns the table.
    pub fn drain(&mut self) -> News {
        let table = self.table.as_bytes();
        drain(&self.socket, &mut self.buf, |datagram| {
            touches_table(datagram, table)
        })
    }
}

impl AsFd for RulesetWatch {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

/// Whether a datagram of nf_tables notifications holds a message about `table`: its first
/// attribute (NFTA_{TABLE_NAME,CHAIN_TABLE,RULE_TABLE,SET_TABLE,...}, all type 1) names it.
/// A message that cannot be read counts as a change (better one check too many than a
/// missed one); a generation marker (NFT_MSG_NEWGEN) does not.
pub fn touches_table(datagram: &[u8], table: &[u8]) -> bool {
    const NLMSG_HDR: usize = 16;
    const NFGENMSG: usize = 4;
    let mut rest = datagram;
    while rest.len() >= NLMSG_HDR {
        let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if len < NLMSG_HDR || len > rest.len() {
            return true;
        }
        let kind = u16::from_ne_bytes([rest[4], rest[5]]);
        let body = &rest[NLMSG_HDR..len];
        if kind >> 8 == NFNL_SUBSYS_NFTABLES && kind & 0xff != NFT_MSG_NEWGEN {
            match first_attribute(body.get(NFGENMSG..).unwrap_or_default(), 1) {
                Some(name) if name.strip_suffix(&[0]).unwrap_or(name) != table => {}
                _ => return true,
            }
        }
        rest = rest.get(align4(len)..).unwrap_or_default();
    }
    false
}

/// The value of the first netlink attribute of type `wanted` in `attrs`.
fn first_attribute(mut attrs: &[u8], wanted: u16) -> Option<&[u8]> {
    while attrs.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([attrs[0], attrs[1]]));
        let kind = u16::from_ne_bytes([attrs[2], attrs[3]]) & 0x3fff;
        if len < 4 || len > attrs.len() {
            return None;
        }
        if kind == wanted {
            return Some(&attrs[4..len]);
        }
        attrs = attrs.get(align4(len)..)?;
    }
    None
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One nf_tables notification: header, nfgenmsg, one string attribute of type 1.
    fn message(msg: u16, table: &str) -> Vec<u8> {
        let mut attr = Vec::new();
        let value_len = table.len() + 1;
        attr.extend_from_slice(&u16::try_from(4 + value_len).unwrap().to_ne_bytes());
        attr.extend_from_slice(&1u16.to_ne_bytes());
        attr.extend_from_slice(table.as_bytes());
        attr.push(0);
        while attr.len() % 4 != 0 {
            attr.push(0);
        }
        let len = 16 + 4 + attr.len();
        let mut m = Vec::new();
        m.extend_from_slice(&u32::try_from(len).unwrap().to_ne_bytes());
        m.extend_from_slice(&((NFNL_SUBSYS_NFTABLES << 8) | msg).to_ne_bytes());
        m.extend_from_slice(&[0; 10]); // flags, seq, pid
        m.extend_from_slice(&[2, 0, 0, 0]); // nfgenmsg: AF_INET
        m.extend_from_slice(&attr);
        m
    }

    #[test]
    fn ruleset_messages_about_the_table() {
        const NEWRULE: u16 = 6;
        const DELCHAIN: u16 = 5;
        assert!(touches_table(&message(NEWRULE, "filter"), b"filter"));
        assert!(touches_table(&message(DELCHAIN, "filter"), b"filter"));
        assert!(!touches_table(&message(NEWRULE, "nat"), b"filter"));
        assert!(!touches_table(
            &message(NFT_MSG_NEWGEN, "filter"),
            b"filter"
        ));
        // Several messages in one datagram: any one about the table.
        let mut both = message(NEWRULE, "nat");
        both.extend(message(NEWRULE, "filter"));
        assert!(touches_table(&both, b"filter"));
        let mut neither = message(NEWRULE, "nat");
        neither.extend(message(NFT_MSG_NEWGEN, "x"));
        assert!(!touches_table(&neither, b"filter"));
        // Unreadable: a change, to be safe. Empty: nothing.
        assert!(touches_table(
            &[200, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            b"filter"
        ));
        assert!(!touches_table(&[], b"filter"));
        // Truncated in every place: never a panic.
        let m = message(NEWRULE, "filter");
        for cut in 0..m.len() {
            let _ = touches_table(&m[..cut], b"filter");
        }
    }
}
