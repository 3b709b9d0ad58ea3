//! POSIX attributes UnixFS has no place for: owner, atime, extended attributes, hard links.
//!
//! The drive's DAG stays pure UnixFS (so a file copied in has the CID `cidfs add` gives it,
//! and Kubo and Helia read the drive as it is). What UnixFS cannot say lives beside it, in
//! a *sidecar* tree of dag-cbor blocks that mirrors the directories that need one:
//!
//! ```text
//! { "e": { name: { "u": uid, "g": gid, "a": [secs, nanos], "x": { xattr: bytes },
//!                  "s": <sidecar of this subdirectory> } },
//!   "h": [[path, path, ...], ...] }        // only at the root: hard-link groups
//! ```
//!
//! An entry appears only if it has something to say, and a directory has a sidecar only if
//! something below it does, so a drive of plain files has none at all (the store's
//! `drive.posix` root then names the empty map, an identity CID that is never stored).
//! Sidecars load with their directory and are rebuilt only for directories whose entries
//! changed, like the DAG itself. Hard-link groups are listed by path at the root and every
//! member is loaded when the drive is, so all names of a linked inode are always in memory.

use std::collections::BTreeMap;

use cid::Cid;
use ipld_core::ipld::Ipld;

use crate::block::{Block, DAG_CBOR};
use crate::unixfs::pb::UnixTime;

/// Largest total size of one node's extended attributes (names and values), like the
/// space a local filesystem gives an inode's xattrs; past it `setxattr` fails `ENOSPC`.
pub const MAX_XATTR_BYTES: usize = 64 << 10;
/// Longest extended attribute name (Linux's XATTR_NAME_MAX).
pub const XATTR_NAME_MAX: usize = 255;

/// The POSIX attributes of one node that UnixFS cannot store (or, for `mode` and `mtime`,
/// does not, so that the node keeps the CID Kubo gives it: `cidfs add` keeps a source's
/// mode and mtime here; UnixFS metadata, when a node has it, wins).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Extras {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub atime: Option<UnixTime>,
    pub mode: Option<u32>,
    pub mtime: Option<UnixTime>,
    /// The change time, only where it is not the mtime (which it is after a write).
    pub ctime: Option<UnixTime>,
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

impl Extras {
    pub fn is_empty(&self) -> bool {
        self.uid.is_none()
            && self.gid.is_none()
            && self.atime.is_none()
            && self.mode.is_none()
            && self.mtime.is_none()
            && self.ctime.is_none()
            && self.xattrs.is_empty()
    }

    /// Bytes the extended attributes take (names and values).
    pub fn xattr_bytes(&self) -> usize {
        self.xattrs.iter().map(|(k, v)| k.len() + v.len()).sum()
    }
}

/// One directory's sidecar.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Side {
    pub entries: BTreeMap<String, SideEntry>,
    /// Hard-link groups (paths from the drive root, `/`-separated); root sidecar only.
    pub groups: Vec<Vec<String>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SideEntry {
    pub extras: Extras,
    /// The sidecar of this entry, when it is a directory that has one.
    pub sub: Option<Cid>,
}

/// The sidecar of a drive with nothing to add to its DAG.
pub fn empty_side() -> Block {
    encode(&Side::default())
}

fn int(v: &Ipld) -> Option<i128> {
    match v {
        Ipld::Integer(i) => Some(*i),
        _ => None,
    }
}

fn u32_of(v: &Ipld) -> Result<u32, String> {
    int(v).and_then(|i| u32::try_from(i).ok()).ok_or_else(|| format!("not a 32-bit id: {v:?}"))
}

/// Encodes a sidecar as a dag-cbor block (identity CID if small: nothing to store).
pub fn encode(side: &Side) -> Block {
    let mut entries = BTreeMap::new();
    for (name, e) in &side.entries {
        let mut m = BTreeMap::new();
        if let Some(u) = e.extras.uid {
            m.insert("u".to_string(), Ipld::Integer(u.into()));
        }
        if let Some(g) = e.extras.gid {
            m.insert("g".to_string(), Ipld::Integer(g.into()));
        }
        if let Some(a) = e.extras.atime {
            m.insert("a".to_string(), time_ipld(a));
        }
        if let Some(mode) = e.extras.mode {
            m.insert("m".to_string(), Ipld::Integer(mode.into()));
        }
        if let Some(t) = e.extras.mtime {
            m.insert("t".to_string(), time_ipld(t));
        }
        if let Some(c) = e.extras.ctime {
            m.insert("c".to_string(), time_ipld(c));
        }
        if !e.extras.xattrs.is_empty() {
            let x = e.extras.xattrs.iter().map(|(k, v)| (k.clone(), Ipld::Bytes(v.clone()))).collect();
            m.insert("x".to_string(), Ipld::Map(x));
        }
        if let Some(s) = e.sub {
            m.insert("s".to_string(), Ipld::Link(s));
        }
        entries.insert(name.clone(), Ipld::Map(m));
    }
    let mut root = BTreeMap::new();
    if !entries.is_empty() {
        root.insert("e".to_string(), Ipld::Map(entries));
    }
    if !side.groups.is_empty() {
        let groups = side.groups.iter().map(|g| Ipld::List(g.iter().cloned().map(Ipld::String).collect()));
        root.insert("h".to_string(), Ipld::List(groups.collect()));
    }
    let bytes = serde_ipld_dagcbor::to_vec(&Ipld::Map(root)).expect("an Ipld map always encodes");
    let version = cid::Version::V1;
    if bytes.len() <= 32 {
        let mh = cid::multihash::Multihash::<64>::wrap(0, &bytes).expect("32 bytes fit");
        Block::from_identity(&Cid::new_v1(DAG_CBOR, mh)).expect("an identity CID")
    } else {
        Block::encode(version, DAG_CBOR, bytes).expect("sha2-256 is supported")
    }
}

/// The sidecar after the root entries `names` were replaced by new content (`cidfs add`
/// links a tree under an existing name): their attributes and every hard-link group that
/// reaches below them go, so nothing carries over to content it was never set on.
pub fn without_root_names(side: &Side, names: &[&str]) -> Side {
    let under = |path: &str| names.iter().any(|n| path == *n || path.starts_with(&format!("{n}/")));
    Side {
        entries: side
            .entries
            .iter()
            .filter(|(k, _)| !names.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        groups: side.groups.iter().filter(|g| !g.iter().any(|p| under(p))).cloned().collect(),
    }
}

fn time_ipld(t: UnixTime) -> Ipld {
    let nanos = t.fractional_nanoseconds.unwrap_or(0);
    Ipld::List(vec![Ipld::Integer(t.seconds.into()), Ipld::Integer(nanos.into())])
}

fn time_of(l: &[Ipld]) -> Option<UnixTime> {
    let [s, n] = l else { return None };
    let seconds = int(s).and_then(|s| i64::try_from(s).ok())?;
    let nanos = int(n).and_then(|n| u32::try_from(n).ok()).filter(|n| *n < 1_000_000_000)?;
    Some(UnixTime { seconds, fractional_nanoseconds: Some(nanos).filter(|n| *n != 0) })
}

/// Decodes a sidecar; anything malformed is an error naming what is wrong.
pub fn decode(v: &Ipld) -> Result<Side, String> {
    let Ipld::Map(root) = v else { return Err("sidecar is not a map".into()) };
    let mut side = Side::default();
    if let Some(e) = root.get("e") {
        let Ipld::Map(entries) = e else { return Err("sidecar entries are not a map".into()) };
        for (name, e) in entries {
            let Ipld::Map(m) = e else { return Err(format!("sidecar entry {name:?} is not a map")) };
            let mut entry = SideEntry::default();
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("u", v) => entry.extras.uid = Some(u32_of(v)?),
                    ("g", v) => entry.extras.gid = Some(u32_of(v)?),
                    ("a", Ipld::List(l)) => {
                        entry.extras.atime = Some(time_of(l).ok_or_else(|| format!("bad atime for {name:?}"))?);
                    }
                    ("t", Ipld::List(l)) => {
                        entry.extras.mtime = Some(time_of(l).ok_or_else(|| format!("bad mtime for {name:?}"))?);
                    }
                    ("c", Ipld::List(l)) => {
                        entry.extras.ctime = Some(time_of(l).ok_or_else(|| format!("bad ctime for {name:?}"))?);
                    }
                    ("m", v) => entry.extras.mode = Some(u32_of(v)? & 0o7777),
                    ("x", Ipld::Map(x)) => {
                        for (xk, xv) in x {
                            let Ipld::Bytes(b) = xv else { return Err(format!("xattr {xk:?} is not bytes")) };
                            entry.extras.xattrs.insert(xk.clone(), b.clone());
                        }
                    }
                    ("s", Ipld::Link(c)) => entry.sub = Some(*c),
                    _ => return Err(format!("unknown or malformed sidecar field {k:?} for {name:?}")),
                }
            }
            side.entries.insert(name.clone(), entry);
        }
    }
    if let Some(h) = root.get("h") {
        let Ipld::List(groups) = h else { return Err("hard-link groups are not a list".into()) };
        for g in groups {
            let Ipld::List(paths) = g else { return Err("a hard-link group is not a list".into()) };
            let paths = paths.iter().map(|p| match p {
                Ipld::String(s) => Ok(s.clone()),
                _ => Err("a hard-link path is not a string".to_string()),
            });
            side.groups.push(paths.collect::<Result<_, _>>()?);
        }
    }
    Ok(side)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sidecars_round_trip_and_the_empty_one_is_inline() {
        let empty = empty_side();
        assert_eq!(empty.cid().hash().code(), 0, "identity: never stored");
        let mut side = Side::default();
        let mut x = Extras { uid: Some(1000), gid: Some(0), mode: Some(0o600), ..Default::default() };
        x.atime = Some(UnixTime { seconds: -5, fractional_nanoseconds: Some(7) });
        x.mtime = Some(UnixTime { seconds: 1_600_000_000, fractional_nanoseconds: None });
        x.ctime = Some(UnixTime { seconds: 1_700_000_000, fractional_nanoseconds: Some(3) });
        x.xattrs.insert("user.a".into(), b"\0\xff".to_vec());
        side.entries.insert("f".into(), SideEntry { extras: x, sub: Some(*empty.cid()) });
        side.groups.push(vec!["a/b".into(), "c".into()]);
        let block = encode(&side);
        let v: Ipld = serde_ipld_dagcbor::from_slice(block.data()).unwrap();
        assert_eq!(decode(&v).unwrap(), side);
        assert_eq!(encode(&side).cid(), block.cid(), "deterministic");
    }

    #[test]
    fn replacing_a_root_name_drops_what_was_said_about_it() {
        let mut side = Side::default();
        for n in ["a", "ab", "c"] {
            let extras = Extras { uid: Some(7), ..Default::default() };
            side.entries.insert(n.into(), SideEntry { extras, sub: None });
        }
        side.groups = vec![vec!["a/x".into(), "c".into()], vec!["ab/y".into(), "c/z".into()]];
        let kept = without_root_names(&side, &["a"]);
        assert_eq!(kept.entries.keys().collect::<Vec<_>>(), ["ab", "c"]);
        assert_eq!(kept.groups, vec![vec!["ab/y".to_string(), "c/z".to_string()]]);
    }

    #[test]
    fn malformed_sidecars_are_errors_not_panics() {
        let bad = [
            Ipld::Integer(1),
            Ipld::Map([("e".to_string(), Ipld::List(vec![]))].into()),
            Ipld::Map([("e".to_string(), Ipld::Map([("f".to_string(), Ipld::Integer(1))].into()))].into()),
            Ipld::Map(
                [(
                    "e".to_string(),
                    Ipld::Map([("f".to_string(), Ipld::Map([("u".to_string(), Ipld::Integer(-1))].into()))].into()),
                )]
                .into(),
            ),
            Ipld::Map([("h".to_string(), Ipld::List(vec![Ipld::Integer(3)]))].into()),
        ];
        for v in bad {
            assert!(decode(&v).is_err(), "{v:?}");
        }
    }
}
