//! The membership packet: a heartbeat or a leave, authenticated with a keyed BLAKE3 MAC.
//!
//! ```text
//! magic "FLB2" | kind u8 | incarnation u64 | seq u64 | sent_unix_ms u64 | stable_ms u32 | hold_ms u32
//! | plan u64 | name | labels: u8 count × (key, value)
//! | peers: u8 count × (name, age_ms u32, stable_ms u32, hold_ms u32, incarnation u64, flags u8, addr)
//! | tag [32]
//! ```
//! Strings are a u8 length and UTF-8; an address is a family byte (4 or 6), the IP, a
//! u16 port; integers are big-endian. The tag covers every byte before it.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Version 2 reports each peer's stability, hold-down and incarnation, so that a member
/// known only through others is counted alike by everyone.
const MAGIC: &[u8; 4] = b"FLB2";
const TAG_LEN: usize = 32;
/// Fits one Ethernet frame with IPv6 and UDP headers; peers that don't fit are left for
/// the next heartbeat.
pub const MAX_PACKET: usize = 1400;

/// A shared secret, stretched to a MAC key.
#[derive(Clone)]
pub struct Key([u8; 32]);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(…)")
    }
}

impl Key {
    /// Any secret of at least 16 bytes (a key file's contents, trailing whitespace trimmed).
    pub fn from_secret(secret: &[u8]) -> Option<Key> {
        let secret = secret.trim_ascii_end();
        (secret.len() >= 16).then(|| Key(blake3::derive_key("ferrolb membership 2026-11 v1", secret)))
    }

    /// Names the key without revealing it (a hash of the MAC key), so that operators can
    /// see which key each speaker sends with.
    pub fn fingerprint(&self) -> String {
        blake3::derive_key("ferrolb membership key fingerprint", &self.0)[..4]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn tag(&self, data: &[u8]) -> blake3::Hash {
        blake3::keyed_hash(&self.0, data)
    }

    /// `body` with its tag appended: a packet that passes authentication whatever it
    /// holds (for the fuzzer, which must reach the parser behind the MAC).
    pub fn seal(&self, body: &[u8]) -> Vec<u8> {
        let mut out = body.to_vec();
        out.extend_from_slice(self.tag(body).as_bytes());
        out
    }
}

/// Why a key file is not used. The last good keys keep serving.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the key file holds no key")]
    Empty,
    #[error("line {line}: a key must be at least 16 bytes")]
    Short { line: usize },
    #[error("more than {MAX_KEYS} keys")]
    TooMany,
}

/// At most this many keys are tried on each packet.
pub const MAX_KEYS: usize = 4;

/// The keys a member accepts, the first of which it sends with. A key file holds one
/// secret per line, so a key is rotated with no restart and no partition: add the new key
/// as a second line everywhere, then make it the first, then drop the old one.
#[derive(Debug, Clone)]
pub struct Keyring {
    /// Never empty.
    keys: Vec<Key>,
}

impl Keyring {
    pub fn single(key: Key) -> Keyring {
        Keyring { keys: vec![key] }
    }

    /// A key file's contents: one secret per non-blank line, surrounding whitespace trimmed.
    pub fn parse(contents: &[u8]) -> Result<Keyring, KeyError> {
        let mut keys = Vec::new();
        for (i, line) in contents.split(|b| *b == b'\n').enumerate() {
            let line = line.trim_ascii();
            if line.is_empty() {
                continue;
            }
            if keys.len() == MAX_KEYS {
                return Err(KeyError::TooMany);
            }
            keys.push(Key::from_secret(line).ok_or(KeyError::Short { line: i + 1 })?);
        }
        if keys.is_empty() {
            return Err(KeyError::Empty);
        }
        Ok(Keyring { keys })
    }

    /// The key this member sends with.
    pub fn primary(&self) -> &Key {
        &self.keys[0]
    }

    /// How many keys are accepted (at least one).
    pub fn count(&self) -> usize {
        self.keys.len()
    }

    /// Which key (0 is the primary) made `tag` over `body`, if any.
    fn verify(&self, body: &[u8], tag: &blake3::Hash) -> Option<usize> {
        // blake3::Hash compares in constant time.
        self.keys.iter().position(|k| k.tag(body) == *tag)
    }
}

/// Sent back to a sender whose packet failed authentication, so that a speaker
/// configured with the wrong key learns it is not admitted instead of announcing every
/// address by itself. It cannot carry a MAC the refused speaker could check (their keys
/// differ), so it echoes the start of the refused packet's tag: only a host that received
/// that packet can send it, and the refused speaker accepts it only from a peer address it
/// knows (a seed or a member). It only ever makes an isolated member hold back.
const REFUSAL_PREFIX: &[u8; 5] = b"FLB2\x03";
pub const ECHO_LEN: usize = 16;

/// The refusal of `refused` (a datagram that failed authentication).
pub fn refusal(refused: &[u8]) -> Vec<u8> {
    let mut out = REFUSAL_PREFIX.to_vec();
    out.extend_from_slice(&echo_of(refused));
    out
}

/// What a refusal of our packet `sent` echoes: the first bytes of its tag.
pub fn echo_of(sent: &[u8]) -> [u8; ECHO_LEN] {
    let mut echo = [0u8; ECHO_LEN];
    let tag = &sent[sent.len().saturating_sub(TAG_LEN)..];
    let n = tag.len().min(ECHO_LEN);
    echo[..n].copy_from_slice(&tag[..n]);
    echo
}

/// The echo a refusal carries, if `data` is one.
pub fn parse_refusal(data: &[u8]) -> Option<[u8; ECHO_LEN]> {
    let rest = data.strip_prefix(REFUSAL_PREFIX.as_slice())?;
    rest.try_into().ok()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Heartbeat = 1,
    Leave = 2,
}

/// A peer as the sender sees it: heard directly `age_ms` ago, at `addr`, reporting
/// `stable_ms` of stability and a hold-down of `hold_ms` from its life `incarnation`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerReport {
    pub name: String,
    pub age_ms: u32,
    pub stable_ms: u32,
    pub hold_ms: u32,
    pub incarnation: u64,
    /// The sender had declared it dead (in this life of it) and heard it again: it was
    /// dropped without knowing, and must wait its hold-down.
    pub readmitted: bool,
    pub addr: SocketAddr,
}

const READMITTED: u8 = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub kind: Kind,
    /// Start time of the sender's process (unix ms): a restart is a new incarnation.
    pub incarnation: u64,
    pub seq: u64,
    pub sent_unix_ms: u64,
    /// How long the sender has been a stable member of the group (0 when it is cut off).
    pub stable_ms: u32,
    /// The sender's hold-down: every member judges it against this, not its own, so that
    /// members started with different hold-downs (a rollout changing it) agree.
    pub hold_ms: u32,
    /// Digest of the sender's plan (addresses and who may announce them): members must
    /// agree on it, or they decide ownership from different inputs.
    pub plan: u64,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub peers: Vec<PeerReport>,
}

/// Why a packet was dropped. Few and fixed: they label a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("malformed")]
    Malformed,
    #[error("authentication failed")]
    BadTag,
    #[error("replayed or out of order")]
    Replay,
    #[error("timestamp outside the replay window (clock skew?)")]
    Clock,
    #[error("another member uses our node name")]
    DuplicateName,
    #[error("a member refused our key")]
    Refused,
    #[error("a refusal that echoes none of our recent packets, or from no known peer (forged?)")]
    ForgedRefusal,
}

impl Rejected {
    pub fn label(self) -> &'static str {
        match self {
            Rejected::Malformed => "malformed",
            Rejected::BadTag => "bad_tag",
            Rejected::Replay => "replay",
            Rejected::Clock => "clock",
            Rejected::DuplicateName => "duplicate_name",
            Rejected::Refused => "refused",
            Rejected::ForgedRefusal => "forged_refusal",
        }
    }
}

/// At most 255 bytes, cut at a character boundary: a cut inside a UTF-8 character would
/// make the whole packet malformed for its receivers.
fn put_str(out: &mut Vec<u8>, s: &str) {
    let b = &s.as_bytes()[..str_len(s)];
    out.push(b.len() as u8);
    out.extend_from_slice(b);
}

fn str_len(s: &str) -> usize {
    let mut n = s.len().min(255);
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    n
}

fn put_addr(out: &mut Vec<u8>, addr: SocketAddr) {
    match addr.ip() {
        IpAddr::V4(ip) => {
            out.push(4);
            out.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out.push(6);
            out.extend_from_slice(&ip.octets());
        }
    }
    out.extend_from_slice(&addr.port().to_be_bytes());
}

impl Packet {
    /// The authenticated bytes. Peers beyond [`MAX_PACKET`] are left out.
    pub fn encode(&self, key: &Key) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(MAGIC);
        out.push(self.kind as u8);
        out.extend_from_slice(&self.incarnation.to_be_bytes());
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.sent_unix_ms.to_be_bytes());
        out.extend_from_slice(&self.stable_ms.to_be_bytes());
        out.extend_from_slice(&self.hold_ms.to_be_bytes());
        out.extend_from_slice(&self.plan.to_be_bytes());
        put_str(&mut out, &self.name);
        // Labels count against the datagram like peers do, and leave room for the peer
        // count and the tag: what does not fit is left out, never sent fragmented or cut.
        let labels_at = out.len();
        out.push(0);
        let mut labels = 0u8;
        for (k, v) in self.labels.iter().take(32) {
            if out.len() + 2 + str_len(k) + str_len(v) + 1 + TAG_LEN > MAX_PACKET {
                break;
            }
            put_str(&mut out, k);
            put_str(&mut out, v);
            labels += 1;
        }
        out[labels_at] = labels;
        let count_at = out.len();
        out.push(0);
        let mut count = 0u8;
        for p in &self.peers {
            let len = 1 + str_len(&p.name) + 4 + 4 + 4 + 8 + 1 + 1 + if p.addr.is_ipv4() { 4 } else { 16 } + 2;
            if count == u8::MAX || out.len() + len + TAG_LEN > MAX_PACKET {
                break;
            }
            put_str(&mut out, &p.name);
            out.extend_from_slice(&p.age_ms.to_be_bytes());
            out.extend_from_slice(&p.stable_ms.to_be_bytes());
            out.extend_from_slice(&p.hold_ms.to_be_bytes());
            out.extend_from_slice(&p.incarnation.to_be_bytes());
            out.push(if p.readmitted { READMITTED } else { 0 });
            put_addr(&mut out, p.addr);
            count += 1;
        }
        out[count_at] = count;
        let tag = key.tag(&out);
        out.extend_from_slice(tag.as_bytes());
        out
    }

    /// Checks the tag first, then parses; never panics on any input. Returns the packet
    /// and which of `keys` authenticated it (0 is the primary).
    pub fn decode(data: &[u8], keys: &Keyring) -> Result<(Packet, usize), Rejected> {
        if parse_refusal(data).is_some() {
            return Err(Rejected::Refused);
        }
        if data.len() < MAGIC.len() + TAG_LEN || &data[..4] != MAGIC {
            return Err(Rejected::Malformed);
        }
        let (body, tag) = data.split_at(data.len() - TAG_LEN);
        let tag = blake3::Hash::from_bytes(tag.try_into().map_err(|_| Rejected::Malformed)?);
        let by = keys.verify(body, &tag).ok_or(Rejected::BadTag)?;
        Ok((Reader { data: body, at: 4 }.packet()?, by))
    }
}

struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Rejected> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.data.len()).ok_or(Rejected::Malformed)?;
        let s = &self.data[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, Rejected> {
        Ok(self.take(1)?[0])
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], Rejected> {
        self.take(N)?.try_into().map_err(|_| Rejected::Malformed)
    }
    fn u64(&mut self) -> Result<u64, Rejected> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, Rejected> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    fn string(&mut self) -> Result<String, Rejected> {
        let n = self.u8()? as usize;
        std::str::from_utf8(self.take(n)?).map(str::to_owned).map_err(|_| Rejected::Malformed)
    }
    fn addr(&mut self) -> Result<SocketAddr, Rejected> {
        let ip = match self.u8()? {
            4 => IpAddr::V4(Ipv4Addr::from(self.array::<4>()?)),
            6 => IpAddr::V6(Ipv6Addr::from(self.array::<16>()?)),
            _ => return Err(Rejected::Malformed),
        };
        Ok(SocketAddr::new(ip, u16::from_be_bytes(self.array()?)))
    }

    fn packet(mut self) -> Result<Packet, Rejected> {
        let kind = match self.u8()? {
            1 => Kind::Heartbeat,
            2 => Kind::Leave,
            _ => return Err(Rejected::Malformed),
        };
        let incarnation = self.u64()?;
        let seq = self.u64()?;
        let sent_unix_ms = self.u64()?;
        let stable_ms = self.u32()?;
        let hold_ms = self.u32()?;
        let plan = self.u64()?;
        let name = self.string()?;
        if name.is_empty() {
            return Err(Rejected::Malformed);
        }
        let mut labels = BTreeMap::new();
        for _ in 0..self.u8()? {
            let k = self.string()?;
            labels.insert(k, self.string()?);
        }
        let mut peers = Vec::new();
        for _ in 0..self.u8()? {
            let name = self.string()?;
            let (age_ms, stable_ms, hold_ms, incarnation) = (self.u32()?, self.u32()?, self.u32()?, self.u64()?);
            let readmitted = self.u8()? & READMITTED != 0;
            peers.push(PeerReport { name, age_ms, stable_ms, hold_ms, incarnation, readmitted, addr: self.addr()? });
        }
        if self.at != self.data.len() {
            return Err(Rejected::Malformed);
        }
        Ok(Packet { kind, incarnation, seq, sent_unix_ms, stable_ms, hold_ms, plan, name, labels, peers })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(s: &str) -> Key {
        Key::from_secret(s.as_bytes()).unwrap()
    }

    fn ring(s: &str) -> Keyring {
        Keyring::single(key(s))
    }

    fn sample() -> Packet {
        Packet {
            kind: Kind::Heartbeat,
            incarnation: 1_790_000_000_000,
            seq: 7,
            sent_unix_ms: 1_790_000_000_500,
            stable_ms: 1234,
            hold_ms: 10_000,
            plan: 0x0123_4567_89ab_cdef,
            name: "node-a".into(),
            labels: [("kubernetes.io/hostname".to_string(), "node-a".to_string())].into(),
            peers: vec![
                PeerReport {
                    name: "node-b".into(),
                    age_ms: 12,
                    stable_ms: 9000,
                    hold_ms: 2000,
                    incarnation: 7,
                    readmitted: true,
                    addr: "198.51.100.3:7946".parse().unwrap(),
                },
                PeerReport {
                    name: "node-c".into(),
                    age_ms: 30,
                    stable_ms: 0,
                    hold_ms: u32::MAX,
                    incarnation: u64::MAX,
                    readmitted: false,
                    addr: "[2001:db8::3]:7946".parse().unwrap(),
                },
            ],
        }
    }

    #[test]
    fn round_trips_and_is_authenticated() {
        let k = key("correct horse battery staple");
        let bytes = sample().encode(&k);
        let keys = Keyring::single(k);
        assert_eq!(Packet::decode(&bytes, &keys), Ok((sample(), 0)));
        assert_eq!(Packet::decode(&bytes, &ring("another secret of enough length")), Err(Rejected::BadTag));
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert!(Packet::decode(&bad, &keys).is_err(), "flipping byte {i} went unnoticed");
        }
    }

    /// A node with Node Feature Discovery's labels: the heartbeat stays within one
    /// datagram and decodes; a label cut at 255 bytes is cut between characters.
    #[test]
    fn heavy_labels_fit_one_datagram_and_never_split_a_character() {
        let keys = Keyring::parse(b"a shared secret for tests").unwrap();
        let mut p = sample();
        p.labels = (0..200)
            .map(|i| (format!("feature.node.kubernetes.io/cpu-cpuid.AVX512VNNI-{i}"), "true".to_string()))
            .collect();
        p.labels.insert("a-long-one".into(), "é".repeat(200));
        let bytes = p.encode(keys.primary());
        assert!(bytes.len() <= MAX_PACKET, "{} bytes", bytes.len());
        let (back, _) = Packet::decode(&bytes, &keys).expect("decodes");
        assert!(!back.labels.is_empty() && back.labels.len() < p.labels.len());
        let mut only_long = sample();
        only_long.labels = [("k".to_string(), "é".repeat(200))].into();
        let (back, _) = Packet::decode(&only_long.encode(keys.primary()), &keys).expect("decodes");
        assert_eq!(back.labels["k"], "é".repeat(127), "cut at 254 bytes, between characters");
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(Key::from_secret(b"short\n").is_none());
        assert!(Key::from_secret(b"sixteen bytes ok\n").is_some());
    }

    #[test]
    fn a_key_file_holds_one_key_per_line_and_the_first_sends() {
        let old = "the old cluster secret";
        let new = "the new cluster secret";
        let rotating = Keyring::parse(format!("{new}\n\n  {old}  \n").as_bytes()).unwrap();
        assert_eq!(rotating.count(), 2);
        // What the old key signed is still accepted, as the second key; we sign with the new.
        let from_old = sample().encode(&key(old));
        assert_eq!(Packet::decode(&from_old, &rotating).map(|(_, by)| by), Ok(1));
        let ours = sample().encode(rotating.primary());
        assert_eq!(Packet::decode(&ours, &ring(new)).map(|(_, by)| by), Ok(0));
        assert_eq!(Packet::decode(&ours, &ring(old)), Err(Rejected::BadTag));
        // One secret with a trailing newline, as before rotation existed.
        let single = Keyring::parse(format!("{old}\n").as_bytes()).unwrap();
        assert_eq!(Packet::decode(&from_old, &single).map(|(_, by)| by), Ok(0));
        assert_eq!(single.primary().fingerprint().len(), 8);
        assert_ne!(single.primary().fingerprint(), rotating.primary().fingerprint());
        assert_eq!(key(old).fingerprint(), single.primary().fingerprint());
    }

    #[test]
    fn bad_key_files_say_what_is_wrong() {
        assert_eq!(Keyring::parse(b" \n\n").unwrap_err(), KeyError::Empty);
        assert_eq!(Keyring::parse(b"a long enough cluster secret\nshort\n").unwrap_err(), KeyError::Short { line: 2 });
        let five = (0..5).map(|i| format!("cluster secret number {i}\n")).collect::<String>();
        assert_eq!(Keyring::parse(five.as_bytes()).unwrap_err(), KeyError::TooMany);
    }

    #[test]
    fn peers_that_do_not_fit_are_left_out() {
        let k = key("correct horse battery staple");
        let mut p = sample();
        p.peers = (0..200)
            .map(|i| PeerReport {
                name: format!("worker-{i:03}.rack-7.example.internal"),
                age_ms: i,
                stable_ms: i * 1000,
                hold_ms: 10_000,
                incarnation: 1_790_000_000_000 + u64::from(i),
                readmitted: i % 2 == 0,
                addr: "[2001:db8::3]:7946".parse().unwrap(),
            })
            .collect();
        let bytes = p.encode(&k);
        assert!(bytes.len() <= MAX_PACKET);
        let (back, _) = Packet::decode(&bytes, &Keyring::single(k)).unwrap();
        assert!(back.peers.len() > 10 && back.peers.len() < 200);
        assert_eq!(back.peers[..], p.peers[..back.peers.len()]);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = Packet::decode(&data, &ring("correct horse battery staple"));
        }

        /// A valid tag over garbage: the parser, not the MAC, must reject it.
        #[test]
        fn authenticated_garbage_is_malformed_not_a_panic(body in proptest::collection::vec(any::<u8>(), 0..300)) {
            let k = key("correct horse battery staple");
            let mut data = MAGIC.to_vec();
            data.extend_from_slice(&body);
            let tag = k.tag(&data);
            data.extend_from_slice(tag.as_bytes());
            let _ = Packet::decode(&data, &Keyring::single(k));
        }
    }
}
