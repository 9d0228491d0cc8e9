//! Every syscall the speaker makes on packets lives here: AF_PACKET sockets with classic
//! BPF filters, multicast membership, batched receive and send, and socket statistics.

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use ferrolb_proto::wire::MacAddr;

pub use libc::sock_filter as BpfInsn;

/// Frames received per `recvmmsg` call.
pub const BATCH: usize = 64;
/// Large enough for any ARP or NDP frame on a standard MTU; longer frames are truncated
/// and reported as such.
pub const FRAME_BUF: usize = 2048;

/// `sll_pkttype` of a frame addressed to another host (or tagged for a VLAN we are not on).
pub const PACKET_OTHERHOST: u8 = libc::PACKET_OTHERHOST;

/// A raw AF_PACKET socket bound to one protocol on one interface.
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
    ifindex: i32,
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

impl PacketSocket {
    /// Opens a non-blocking packet socket for `protocol` (an EtherType) on `ifindex`.
    /// The filter is attached before the socket is bound, so no frame reaches it unfiltered.
    pub fn open(ifindex: i32, protocol: u16, filter: &[BpfInsn]) -> io::Result<PacketSocket> {
        // SAFETY: plain syscall with constant arguments; protocol 0 means the socket
        // receives nothing until bind() names a protocol.
        let fd = check(unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        })?;
        // SAFETY: fd was just returned by socket() and is owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let sock = PacketSocket { fd, ifindex };
        // Our own transmissions would otherwise loop back into the receive path.
        sock.set_int(libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, 1)?;
        // We send complete frames: the qdisc layer only adds cost (and queueing).
        sock.set_int(libc::SOL_PACKET, libc::PACKET_QDISC_BYPASS, 1)?;
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

    fn set_int(&self, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
        // SAFETY: value lives for the call and the length is its size.
        check(unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                level,
                name,
                (&raw const value).cast(),
                mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        })
        .map(drop)
    }

    /// Replaces the socket's filter atomically: each frame sees the old or the new one.
    pub fn set_filter(&self, filter: &[BpfInsn]) -> io::Result<()> {
        let prog = libc::sock_fprog {
            len: filter.len() as u16,
            filter: filter.as_ptr().cast_mut(),
        };
        // SAFETY: prog points at `filter`, which outlives the call; the kernel copies it.
        check(unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ATTACH_FILTER,
                (&raw const prog).cast(),
                mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
            )
        })
        .map(drop)
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
        let op = if join {
            libc::PACKET_ADD_MEMBERSHIP
        } else {
            libc::PACKET_DROP_MEMBERSHIP
        };
        // SAFETY: mreq is a valid packet_mreq for the call's duration.
        check(unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                op,
                (&raw const mreq).cast(),
                mem::size_of::<libc::packet_mreq>() as libc::socklen_t,
            )
        })
        .map(drop)
    }

    /// Receives up to [`BATCH`] frames without blocking. `Ok(0)` never happens: an empty
    /// socket gives `WouldBlock`.
    pub fn recv_batch(&self, batch: &mut RecvBatch) -> io::Result<usize> {
        let mut iovs: [libc::iovec; BATCH] = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; BATCH];
        // SAFETY: mmsghdr is plain data for which all-zero is a valid value.
        let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { mem::zeroed() };
        for (i, (buf, name)) in batch
            .bufs
            .iter_mut()
            .zip(batch.names.iter_mut())
            .enumerate()
        {
            iovs[i] = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: FRAME_BUF,
            };
            hdrs[i].msg_hdr.msg_iov = &raw mut iovs[i];
            hdrs[i].msg_hdr.msg_iovlen = 1;
            hdrs[i].msg_hdr.msg_name = (name as *mut libc::sockaddr_ll).cast();
            hdrs[i].msg_hdr.msg_namelen = mem::size_of::<libc::sockaddr_ll>() as u32;
        }
        // SAFETY: every header points at a buffer and a name in `batch`, which outlive
        // the call and are not otherwise borrowed; vlen matches the array length.
        let n = check(unsafe {
            libc::recvmmsg(
                self.fd.as_raw_fd(),
                hdrs.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_DONTWAIT | libc::MSG_TRUNC,
                std::ptr::null_mut(),
            )
        })? as usize;
        for (i, hdr) in hdrs.iter().enumerate().take(n) {
            batch.lens[i] = hdr.msg_len as usize;
        }
        Ok(n)
    }

    /// Sends whole Ethernet frames out of the bound interface, in as few syscalls as the
    /// kernel allows. Returns how many were sent.
    pub fn send_batch(&self, frames: &[&[u8]]) -> io::Result<usize> {
        let mut sent = 0;
        for chunk in frames.chunks(BATCH) {
            let mut iovs: [libc::iovec; BATCH] = [libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            }; BATCH];
            // SAFETY: mmsghdr is plain data for which all-zero is a valid value.
            let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { mem::zeroed() };
            for (i, f) in chunk.iter().enumerate() {
                iovs[i] = libc::iovec {
                    iov_base: f.as_ptr().cast_mut().cast(),
                    iov_len: f.len(),
                };
                hdrs[i].msg_hdr.msg_iov = &raw mut iovs[i];
                hdrs[i].msg_hdr.msg_iovlen = 1;
            }
            // SAFETY: the headers point at the caller's frames, which outlive the call and
            // which the kernel only reads; vlen is the chunk length.
            let n = check(unsafe {
                libc::sendmmsg(
                    self.fd.as_raw_fd(),
                    hdrs.as_mut_ptr(),
                    chunk.len() as u32,
                    libc::MSG_DONTWAIT,
                )
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
        let mut stats = libc::tpacket_stats {
            tp_packets: 0,
            tp_drops: 0,
        };
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

/// Receive buffers for one socket, reused across calls.
pub struct RecvBatch {
    bufs: Vec<[u8; FRAME_BUF]>,
    names: Vec<libc::sockaddr_ll>,
    lens: [usize; BATCH],
}

impl std::fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBatch").finish_non_exhaustive()
    }
}

impl Default for RecvBatch {
    fn default() -> Self {
        RecvBatch {
            bufs: vec![[0; FRAME_BUF]; BATCH],
            names: vec![sockaddr_ll(0, 0); BATCH],
            lens: [0; BATCH],
        }
    }
}

impl RecvBatch {
    /// Frame `i` of the last batch: its bytes, its packet type, and whether it was cut.
    pub fn frame(&self, i: usize) -> (&[u8], u8, bool) {
        let len = self.lens[i];
        (
            &self.bufs[i][..len.min(FRAME_BUF)],
            self.names[i].sll_pkttype,
            len > FRAME_BUF,
        )
    }
}
