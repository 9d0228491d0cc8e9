//! Every syscall the speaker makes on packets lives here: AF_PACKET sockets with classic
//! BPF filters, multicast membership, batched receive and send, and socket statistics.

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use ferrolb_wire::MacAddr;

pub use libc::sock_filter as BpfInsn;

/// Frames handled (and replies sent with one `sendmmsg`) per batch.
pub const BATCH: usize = 64;
/// Bytes of a frame the kernel filter passes on; the ring slot bounds it further.
pub const FRAME_BUF: usize = 2048;

/// `sll_pkttype` of a frame addressed to another host (or tagged for a VLAN we are not on).
pub const PACKET_OTHERHOST: u8 = libc::PACKET_OTHERHOST;
/// `sll_pkttype` of a frame this host sent (seen when `PACKET_IGNORE_OUTGOING` is missing).
pub const PACKET_OUTGOING: u8 = libc::PACKET_OUTGOING;
/// `tp_status` bit: the frame carried an 802.1Q tag, which the kernel moved into
/// `tp_vlan_tci` (hardware offload or its own untagging).
const TP_STATUS_VLAN_VALID: u32 = 1 << 4;

/// What the kernel says about a received frame besides its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxMeta {
    /// `sll_pkttype`: host, broadcast, multicast, other host, outgoing.
    pub pkttype: u8,
    /// The frame was longer than what was captured.
    pub truncated: bool,
    /// The VLAN the frame was tagged with: such a frame belongs to that VLAN's
    /// sub-interface, not to the one the socket is bound to.
    pub vlan: Option<u16>,
}

/// A raw AF_PACKET socket bound to one protocol on one interface.
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
    ifindex: i32,
    /// Dropped after `fd`: unmapping a ring after closing its socket is fine.
    ring: Option<RxRing>,
}

/// Slots in a receive ring: the depth a burst can reach before the kernel drops, which a
/// plain socket's buffer cannot match without raising `net.core.rmem_max`.
pub const RING_FRAMES: usize = 2048;
/// Bytes per slot: the TPACKET_V2 header and address, then up to 192 bytes of frame,
/// ample for ARP (42-60) and Neighbor Solicitations (86 with one option).
const RING_FRAME_SIZE: usize = 256;
const RING_BLOCK_SIZE: usize = 4096;

/// A TPACKET_V2 receive ring mapped into this process: the kernel writes frames into
/// slots and flags them; user space reads them in place and hands each slot back.
#[derive(Debug)]
struct RxRing {
    base: std::ptr::NonNull<u8>,
    len: usize,
    next: usize,
}

// SAFETY: the mapping is owned by this value alone; frames are only read through
// `&mut PacketSocket` (one reader at a time), and the kernel synchronises with that
// reader through each slot's atomic status word.
unsafe impl Send for RxRing {}
// SAFETY: shared references give no access to the mapping (see above).
unsafe impl Sync for RxRing {}

impl Drop for RxRing {
    fn drop(&mut self) {
        // SAFETY: base/len are exactly the mapping made in `attach_ring`, unmapped once.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 { Err(io::Error::last_os_error()) } else { Ok(ret) }
}

impl PacketSocket {
    /// Opens a non-blocking packet socket for `protocol` (an EtherType) on `ifindex`.
    /// The filter is attached before the socket is bound, so no frame reaches it unfiltered.
    pub fn open(ifindex: i32, protocol: u16, filter: &[BpfInsn]) -> io::Result<PacketSocket> {
        // SAFETY: plain syscall with constant arguments; protocol 0 means the socket
        // receives nothing until bind() names a protocol.
        let fd = check(unsafe {
            libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0)
        })?;
        // SAFETY: fd was just returned by socket() and is owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let sock = PacketSocket { fd, ifindex, ring: None };
        // Our own transmissions would otherwise loop back into the receive path. Linux
        // before 4.20 lacks the option: there the filters drop outgoing frames instead
        // (`bpf::reject_outgoing_and_vlan`), at the cost of a filter run per frame sent.
        if let Err(e) = sock.set_int(libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, 1)
            && e.raw_os_error() != Some(libc::ENOPROTOOPT)
        {
            return Err(e);
        }
        sock.set_filter(filter)?;
        let addr = sockaddr_ll(ifindex, protocol);
        // SAFETY: addr is a valid sockaddr_ll and the length passed is its size.
        check(unsafe {
            libc::bind(
                sock.fd.as_raw_fd(),
                (&raw const addr).cast(),
                mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        })?;
        Ok(sock)
    }

    /// Like [`PacketSocket::open`], with a receive ring: frames are then read with
    /// [`PacketSocket::for_each_ring_frame`] instead of `recv_batch`.
    pub fn open_with_ring(ifindex: i32, protocol: u16, filter: &[BpfInsn]) -> io::Result<PacketSocket> {
        let mut sock = PacketSocket::open(ifindex, protocol, filter)?;
        sock.attach_ring()?;
        Ok(sock)
    }

    fn attach_ring(&mut self) -> io::Result<()> {
        self.set_int(libc::SOL_PACKET, libc::PACKET_VERSION, libc::tpacket_versions::TPACKET_V2 as libc::c_int)?;
        let req = libc::tpacket_req {
            tp_block_size: RING_BLOCK_SIZE as u32,
            tp_block_nr: (RING_FRAMES * RING_FRAME_SIZE / RING_BLOCK_SIZE) as u32,
            tp_frame_size: RING_FRAME_SIZE as u32,
            tp_frame_nr: RING_FRAMES as u32,
        };
        self.set_opt(libc::SOL_PACKET, libc::PACKET_RX_RING, &req)?;
        let len = RING_FRAMES * RING_FRAME_SIZE;
        // SAFETY: maps the ring just configured on our own descriptor; the kernel checks
        // the length against it. The result is checked before use.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                self.fd.as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = std::ptr::NonNull::new(base.cast()).ok_or_else(io::Error::last_os_error)?;
        self.ring = Some(RxRing { base, len, next: 0 });
        Ok(())
    }

    /// Visits up to `max` frames waiting in the receive ring, in order, as the bytes
    /// captured and their metadata, handing each slot back to the kernel after `f`
    /// returns. Never more than the captured length is read. Returns how many were
    /// visited: fewer than `max` means the ring is empty.
    pub fn for_each_ring_frame(&mut self, max: usize, mut f: impl FnMut(&[u8], RxMeta)) -> usize {
        let Some(ring) = &mut self.ring else { return 0 };
        let mut seen = 0;
        while seen < max {
            let slot = ring.next;
            // SAFETY: slot < RING_FRAMES, so the slot lies inside the mapping; slots are
            // 256-byte aligned, so the status word is aligned for an atomic.
            let hdr = unsafe { ring.base.as_ptr().add(slot * RING_FRAME_SIZE) };
            // SAFETY: as above; the kernel writes the status word concurrently, hence atomic.
            let status = unsafe { &*hdr.cast::<std::sync::atomic::AtomicU32>() };
            if status.load(std::sync::atomic::Ordering::Acquire) & libc::TP_STATUS_USER == 0 {
                break;
            }
            // SAFETY: the slot is ours until we hand it back (TP_STATUS_USER was set with
            // release ordering by the kernel after it wrote the header and frame).
            let h = unsafe { &*hdr.cast::<libc::tpacket2_hdr>() };
            let (mac, snap) = (usize::from(h.tp_mac), h.tp_snaplen as usize);
            let truncated = h.tp_snaplen < h.tp_len;
            let addr_at = (mem::size_of::<libc::tpacket2_hdr>() + 15) & !15;
            // SAFETY: the kernel places a sockaddr_ll right after the aligned header.
            let pkttype = unsafe { (*hdr.add(addr_at).cast::<libc::sockaddr_ll>()).sll_pkttype };
            let vlan =
                (h.tp_status & TP_STATUS_VLAN_VALID != 0 || h.tp_vlan_tci != 0).then_some(h.tp_vlan_tci & 0x0fff);
            let meta = RxMeta { pkttype, truncated, vlan };
            // The kernel caps the capture at the slot; a header claiming more is not trusted.
            let snap = snap.min(RING_FRAME_SIZE.saturating_sub(mac));
            // SAFETY: mac + snap <= RING_FRAME_SIZE (just above), inside this slot.
            let frame = unsafe { std::slice::from_raw_parts(hdr.add(mac.min(RING_FRAME_SIZE)), snap) };
            f(frame, meta);
            status.store(libc::TP_STATUS_KERNEL, std::sync::atomic::Ordering::Release);
            ring.next = (slot + 1) % RING_FRAMES;
            seen += 1;
        }
        seen
    }

    fn set_int(&self, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
        self.set_opt(level, name, &value)
    }

    /// `setsockopt` with a plain-data option value.
    fn set_opt<T: Copy>(&self, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
        // SAFETY: `value` is a live, initialised T for the call's duration and the length
        // passed is its size; the kernel copies it and keeps no pointer.
        check(unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                level,
                name,
                (value as *const T).cast(),
                mem::size_of::<T>() as libc::socklen_t,
            )
        })
        .map(drop)
    }

    /// Replaces the socket's filter atomically: each frame sees the old or the new one.
    pub fn set_filter(&self, filter: &[BpfInsn]) -> io::Result<()> {
        // `filter` outlives the call; the kernel copies the program it points to.
        let prog = libc::sock_fprog { len: filter.len() as u16, filter: filter.as_ptr().cast_mut() };
        self.set_opt(libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &prog)
    }

    /// Joins (or leaves) a link-layer multicast group, so that a NIC filtering multicast
    /// in hardware delivers it (e.g. a solicited-node group).
    pub fn multicast_membership(&self, group: MacAddr, join: bool) -> io::Result<()> {
        let mut mreq = libc::packet_mreq {
            mr_ifindex: self.ifindex,
            mr_type: libc::PACKET_MR_MULTICAST as u16,
            mr_alen: 6,
            mr_address: [0; 8],
        };
        mreq.mr_address[..6].copy_from_slice(&group.0);
        let op = if join { libc::PACKET_ADD_MEMBERSHIP } else { libc::PACKET_DROP_MEMBERSHIP };
        self.set_opt(libc::SOL_PACKET, op, &mreq)
    }

    /// Sends whole Ethernet frames out of the bound interface, in as few syscalls as the
    /// kernel allows; a batch the kernel took only part of is resent from where it
    /// stopped. Returns how many were sent, and the error that stopped the rest.
    pub fn send_all(&self, frames: &[&[u8]]) -> (usize, Option<io::Error>) {
        let mut sent = 0;
        let mut stalls = 0;
        while sent < frames.len() {
            match self.send_batch(&frames[sent..]) {
                Ok(0) => stalls += 1,
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // The queue is full: a few retries, then the rest is the next request's.
                Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::ENOBUFS)) && stalls < 3 => stalls += 1,
                Err(e) => return (sent, Some(e)),
            }
            if stalls >= 3 {
                return (sent, Some(io::Error::from_raw_os_error(libc::ENOBUFS)));
            }
        }
        (sent, None)
    }

    /// One `sendmmsg` per [`BATCH`] frames; stops at the first batch sent short.
    pub fn send_batch(&self, frames: &[&[u8]]) -> io::Result<usize> {
        let mut sent = 0;
        for chunk in frames.chunks(BATCH) {
            let mut iovs: [libc::iovec; BATCH] = [libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; BATCH];
            // SAFETY: mmsghdr is plain data for which all-zero is a valid value.
            let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { mem::zeroed() };
            for (i, f) in chunk.iter().enumerate() {
                iovs[i] = libc::iovec { iov_base: f.as_ptr().cast_mut().cast(), iov_len: f.len() };
                hdrs[i].msg_hdr.msg_iov = &raw mut iovs[i];
                hdrs[i].msg_hdr.msg_iovlen = 1;
            }
            // SAFETY: the headers point at the caller's frames, which outlive the call and
            // which the kernel only reads; vlen is the chunk length.
            let n = check(unsafe {
                libc::sendmmsg(self.fd.as_raw_fd(), hdrs.as_mut_ptr(), chunk.len() as u32, libc::MSG_DONTWAIT)
            })?;
            sent += n as usize;
            if (n as usize) < chunk.len() {
                break;
            }
        }
        Ok(sent)
    }

    /// Frames that passed the filter and frames the kernel dropped for lack of buffer
    /// space, since the last call (the kernel resets the counters on read).
    pub fn take_stats(&self) -> io::Result<(u64, u64)> {
        let mut stats = libc::tpacket_stats { tp_packets: 0, tp_drops: 0 };
        let mut len = mem::size_of::<libc::tpacket_stats>() as libc::socklen_t;
        // SAFETY: stats and len are valid for writes of the sizes given.
        check(unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                (&raw mut stats).cast(),
                &raw mut len,
            )
        })?;
        Ok((u64::from(stats.tp_packets), u64::from(stats.tp_drops)))
    }
}

/// The kernel's link and address change notifications (rtnetlink multicast groups): the
/// speaker re-reads its interfaces when one arrives instead of polling sysfs.
#[derive(Debug)]
pub struct LinkEvents {
    fd: OwnedFd,
}

impl LinkEvents {
    pub fn open() -> io::Result<tokio::io::unix::AsyncFd<LinkEvents>> {
        // SAFETY: plain syscall with constant arguments.
        let fd = check(unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        })?;
        // SAFETY: fd was just returned by socket() and is owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: sockaddr_nl is plain data for which all-zero is a valid value.
        let mut addr: libc::sockaddr_nl = unsafe { mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as u16;
        addr.nl_groups = (libc::RTMGRP_LINK | libc::RTMGRP_IPV4_IFADDR | libc::RTMGRP_IPV6_IFADDR) as u32;
        // SAFETY: addr is a valid sockaddr_nl and the length passed is its size.
        check(unsafe {
            libc::bind(fd.as_raw_fd(), (&raw const addr).cast(), mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t)
        })?;
        // SAFETY: LinkEvents owns its descriptor for as long as the AsyncFd owns it, and
        // `as_raw_fd` always returns that same descriptor.
        unsafe { tokio::io::unix::AsyncFd::register(LinkEvents { fd }) }.map_err(|e| e.into_parts().1)
    }

    /// Discards what is queued: only that something changed matters. True if anything
    /// was (an overrun, ENOBUFS, counts: events were lost).
    pub fn drain(&self) -> bool {
        let mut buf = [0u8; 8192];
        let mut any = false;
        loop {
            // SAFETY: buf is valid for writes of its length for the call's duration.
            let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
            if n > 0 {
                any = true;
                continue;
            }
            let e = io::Error::last_os_error();
            return any || (n < 0 && e.raw_os_error() == Some(libc::ENOBUFS));
        }
    }
}

impl AsRawFd for LinkEvents {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// IPv6 multicast memberships on one interface, joined through the IPv6 stack so that
/// the kernel sends MLD reports and answers queries: behind an MLD-snooping switch or
/// bridge, solicitations to a group nobody reported never arrive.
#[derive(Debug)]
pub struct Ipv6Groups {
    ifindex: i32,
    /// The kernel bounds memberships per socket (by `net.core.optmem_max`): another
    /// socket is opened when one is full.
    sockets: Vec<OwnedFd>,
    joined: std::collections::HashMap<std::net::Ipv6Addr, usize>,
}

impl Ipv6Groups {
    pub fn new(ifindex: i32) -> Ipv6Groups {
        Ipv6Groups { ifindex, sockets: Vec::new(), joined: std::collections::HashMap::new() }
    }

    fn open_socket() -> io::Result<OwnedFd> {
        // SAFETY: plain syscall with constant arguments.
        let fd = check(unsafe { libc::socket(libc::AF_INET6, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
        // SAFETY: fd was just returned by socket() and is owned by nothing else.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    fn membership(fd: &OwnedFd, group: std::net::Ipv6Addr, ifindex: i32, join: bool) -> io::Result<()> {
        let mreq = libc::ipv6_mreq {
            ipv6mr_multiaddr: libc::in6_addr { s6_addr: group.octets() },
            ipv6mr_interface: ifindex as u32,
        };
        let op = if join { libc::IPV6_ADD_MEMBERSHIP } else { libc::IPV6_DROP_MEMBERSHIP };
        // SAFETY: mreq is a live ipv6_mreq for the call and the length passed is its size.
        check(unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::IPPROTO_IPV6,
                op,
                (&raw const mreq).cast(),
                mem::size_of::<libc::ipv6_mreq>() as libc::socklen_t,
            )
        })
        .map(drop)
    }

    pub fn join(&mut self, group: std::net::Ipv6Addr) -> io::Result<()> {
        if self.joined.contains_key(&group) {
            return Ok(());
        }
        for attempt in 0..2 {
            if self.sockets.is_empty() || attempt == 1 {
                self.sockets.push(Self::open_socket()?);
            }
            let last = self.sockets.len() - 1;
            match Self::membership(&self.sockets[last], group, self.ifindex, true) {
                Ok(()) => {
                    self.joined.insert(group, last);
                    return Ok(());
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) && attempt == 0 => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::from_raw_os_error(libc::ENOBUFS))
    }

    pub fn leave(&mut self, group: std::net::Ipv6Addr) -> io::Result<()> {
        let Some(i) = self.joined.remove(&group) else { return Ok(()) };
        Self::membership(&self.sockets[i], group, self.ifindex, false)
    }
}

impl PacketSocket {
    /// Registers the socket with the tokio reactor.
    pub fn into_async(self) -> io::Result<tokio::io::unix::AsyncFd<PacketSocket>> {
        // SAFETY: the PacketSocket owns its descriptor (an OwnedFd that nothing else can
        // close or replace) and `as_raw_fd` always returns that same descriptor, for as
        // long as the AsyncFd owns the socket.
        unsafe { tokio::io::unix::AsyncFd::register(self) }.map_err(|e| e.into_parts().1)
    }
}

impl AsRawFd for PacketSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

fn sockaddr_ll(ifindex: i32, protocol: u16) -> libc::sockaddr_ll {
    libc::sockaddr_ll {
        sll_family: libc::AF_PACKET as u16,
        sll_protocol: protocol.to_be(),
        sll_ifindex: ifindex,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 0,
        sll_addr: [0; 8],
    }
}

/// Hands freed heap memory back to the kernel. A reload parses the whole file into
/// temporary trees; without this, glibc keeps that peak as resident memory.
pub fn release_free_memory() {
    // SAFETY: malloc_trim only walks glibc's own heap; it has no preconditions.
    unsafe { libc::malloc_trim(0) };
}
