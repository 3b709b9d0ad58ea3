//! What UnixFS cannot store — owners, atime, ctime, extended attributes, hard links — kept
//! in the POSIX sidecar beside the DAG (see [`posix`]): loaded with each directory,
//! changed by `chown`, `utimens`, `setxattr` and `link`, and rebuilt by the commit for the
//! directories whose entries' extras changed.

use std::collections::{BTreeMap, HashMap};

use cid::Cid;

use super::posix::{self, Extras, Side, SideEntry};
use super::tree::{DNode, Tree, now};
use super::{Drive, ROOT_INO, check_name};
use crate::unixfs::pb::UnixTime;
use crate::unixfs::{Node, Nodes};
use crate::vfs::{Attr, VfsError};

impl Drive {
    /// Gives the drive its POSIX sidecar (the store's `drive.posix` root; see [`posix`]),
    /// before anything is looked up.
    pub(crate) fn set_sidecar(&self, side: Cid) {
        let mut d = self.tree.lock().expect("lock poisoned");
        if matches!(d.nodes.get(&ROOT_INO), Some(DNode::Lazy { .. })) {
            d.sides.insert(ROOT_INO, side);
        }
    }

    /// Loads the sidecar of directory `ino` (if it has one) into the extras of its
    /// `entries`; returns the hard-link groups it lists (the root's only).
    pub(super) fn load_side(
        &self,
        d: &mut Tree,
        ino: u64,
        entries: &BTreeMap<String, u64>,
    ) -> Result<Vec<Vec<String>>, VfsError> {
        let Some(cid) = d.sides.get(&ino).copied() else { return Ok(Vec::new()) };
        let node = Nodes::node(self, &cid)?;
        let side = match node.as_ref() {
            Node::Cbor(v) => posix::decode(v),
            _ => Err("not dag-cbor".to_string()),
        }
        .map_err(|reason| VfsError::BadSidecar { cid, reason })?;
        for (name, entry) in side.entries {
            let child = match entries.get(&name) {
                Some(&child) => child,
                None if name.is_empty() && ino == ROOT_INO => ROOT_INO, // the root's own
                None => continue,
            };
            if !entry.extras.is_empty() {
                d.extras.insert(child, entry.extras);
            }
            if let Some(sub) = entry.sub {
                d.sides.insert(child, sub);
            }
        }
        Ok(side.groups)
    }

    /// Joins the names of each hard-link group into one inode (loading every member).
    pub(super) fn load_links(&self, d: &mut Tree, groups: &[Vec<String>]) -> Result<(), VfsError> {
        for group in groups {
            let mut members: Vec<(u64, String, u64)> = Vec::new();
            for path in group {
                match self.walk_path(d, path) {
                    Ok(Some(m)) => members.push(m),
                    Ok(None) => log::warn!("hard-link group: {path} is not in the drive; skipped"),
                    Err(e) => return Err(e),
                }
            }
            let Some(&(_, _, canonical)) = members.first() else { continue };
            self.resolve(d, canonical)?;
            if !matches!(d.nodes.get(&canonical), Some(DNode::File { .. } | DNode::Symlink { .. })) || members.len() < 2
            {
                continue;
            }
            for (dir, name, ino) in &members[1..] {
                if let Some(DNode::Dir { entries, .. }) = d.nodes.get_mut(dir) {
                    entries.insert(name.clone(), canonical);
                }
                if *ino != canonical {
                    d.nodes.remove(ino);
                    d.extras.remove(ino);
                    d.parents.remove(ino);
                }
            }
            d.links.insert(canonical, members.into_iter().map(|(dir, name, _)| (dir, name)).collect());
        }
        Ok(())
    }

    /// Finds `a/b/c` from the drive root: (directory, name, inode), or None if absent.
    pub(super) fn walk_path(&self, d: &mut Tree, path: &str) -> Result<Option<(u64, String, u64)>, VfsError> {
        let parts: Vec<&str> = path.split('/').collect();
        let mut dir = ROOT_INO;
        for (i, part) in parts.iter().enumerate() {
            let Ok(entries) = self.children(d, dir) else { return Ok(None) };
            let Some(&ino) = entries.get(*part) else { return Ok(None) };
            if i + 1 == parts.len() {
                return Ok(Some((dir, part.to_string(), ino)));
            }
            self.resolve(d, ino)?;
            dir = ino;
        }
        Ok(None)
    }
}

impl Tree {
    /// Every (directory, name) of `ino`: one, none once unlinked, more when hard-linked.
    pub(super) fn names_of(&self, ino: u64) -> Vec<(u64, String)> {
        if let Some(names) = self.links.get(&ino) {
            return names.clone();
        }
        let Some(&parent) = self.parents.get(&ino) else { return Vec::new() };
        match self.nodes.get(&parent) {
            Some(DNode::Dir { entries, .. }) if parent != ino => {
                entries.iter().filter(|(_, i)| **i == ino).map(|(n, _)| (parent, n.clone())).take(1).collect()
            }
            _ => Vec::new(),
        }
    }

    /// Whether `ino` has a name (not unlinked); no scan.
    pub(super) fn is_named(&self, ino: u64) -> bool {
        self.links.contains_key(&ino) || self.parents.contains_key(&ino)
    }

    /// The directories naming `ino` (cheaper than [`names_of`](Self::names_of): no scan).
    pub(super) fn dirs_of(&self, ino: u64) -> Vec<u64> {
        match self.links.get(&ino) {
            Some(names) => names.iter().map(|(dir, _)| *dir).collect(),
            None => self.parents.get(&ino).copied().filter(|p| *p != ino).into_iter().collect(),
        }
    }

    /// Forgets one name of `ino` (it was unlinked or replaced).
    /// An unnamed node lives on for its open handles, but has no directory and nothing
    /// of it is committed.
    pub(super) fn forget_name(&mut self, ino: u64, dir: u64, name: &str) {
        let mut rest = self.links.remove(&ino).unwrap_or_default();
        rest.retain(|(p, n)| !(*p == dir && n == name));
        match rest.len() {
            0 => {
                self.parents.remove(&ino);
                self.versions.remove(&ino);
                self.prebuilt.remove(&ino);
            }
            1 => {
                self.parents.insert(ino, rest[0].0);
            }
            _ => {
                self.links.insert(ino, rest);
            }
        }
    }

    /// The paths of every hard-link group, as the root sidecar lists them.
    pub(super) fn link_groups(&self) -> Vec<Vec<String>> {
        let mut memo: HashMap<u64, String> = HashMap::new();
        let mut groups: Vec<Vec<String>> = self
            .links
            .values()
            .map(|names| {
                let mut paths: Vec<String> = names
                    .iter()
                    .filter_map(|(dir, name)| {
                        let base = self.dir_path(*dir, &mut memo)?;
                        Some(if base.is_empty() { name.clone() } else { format!("{base}/{name}") })
                    })
                    .collect();
                paths.sort();
                paths
            })
            .filter(|g| g.len() > 1)
            .collect();
        groups.sort();
        groups
    }

    /// The path of a loaded directory from the drive root ("" for the root), if it is
    /// still in the tree.
    pub(super) fn dir_path(&self, dir: u64, memo: &mut HashMap<u64, String>) -> Option<String> {
        if dir == ROOT_INO {
            return Some(String::new());
        }
        if let Some(p) = memo.get(&dir) {
            return Some(p.clone());
        }
        let parent = *self.parents.get(&dir)?;
        let Some(DNode::Dir { entries, .. }) = self.nodes.get(&parent) else { return None };
        let name = entries.iter().find(|(_, i)| **i == dir)?.0.clone();
        let base = self.dir_path(parent, memo)?;
        let path = if base.is_empty() { name } else { format!("{base}/{name}") };
        memo.insert(dir, path.clone());
        Some(path)
    }

    /// The sidecar of directory `ino` from its entries' extras and sub-sidecars.
    pub(super) fn build_side(&self, ino: u64, groups: Vec<Vec<String>>) -> Side {
        let mut side = Side { groups, ..Default::default() };
        if let Some(x) = self.extras.get(&ino).filter(|_| ino == ROOT_INO) {
            side.entries.insert(String::new(), SideEntry { extras: x.clone(), sub: None });
        }
        if let Some(DNode::Dir { entries, .. }) = self.nodes.get(&ino) {
            for (name, child) in entries {
                let extras = self.extras.get(child).cloned().unwrap_or_default();
                let sub = self.sides.get(child).copied();
                if !extras.is_empty() || sub.is_some() {
                    side.entries.insert(name.clone(), SideEntry { extras, sub });
                }
            }
        }
        side
    }
}

impl Drive {
    /// Changes the extras of `ino` with `change`; its directories' sidecars are rebuilt
    /// at the next commit.
    pub(super) fn change_extras<T>(
        &self,
        ino: u64,
        change: impl FnOnce(&mut Extras) -> Result<T, VfsError>,
    ) -> Result<T, VfsError> {
        let mut d = self.drive_mut()?;
        self.resolve(&mut d, ino)?;
        match d.nodes.get(&ino) {
            Some(DNode::Dir { .. } | DNode::File { .. } | DNode::Symlink { .. }) => {}
            Some(_) => return Err(VfsError::ReadOnly),
            None => return Err(VfsError::ReadOnly), // content under a CID
        }
        let mut extras = d.extras.remove(&ino).unwrap_or_default();
        let before = extras.clone();
        let out = change(&mut extras);
        let changed = extras != before;
        if changed {
            extras.ctime = Some(now()); // an owner, an xattr or the atime changed
        }
        if !extras.is_empty() {
            d.extras.insert(ino, extras);
        }
        if changed {
            if ino == ROOT_INO {
                d.side_dirty.insert(ROOT_INO); // the root's own extras sit in its sidecar
            }
            for dir in d.dirs_of(ino) {
                d.side_dirty.insert(dir);
            }
            d.changed = true;
        }
        out
    }

    /// The extended attributes stored on a drive node.
    pub(crate) fn xattrs(&self, ino: u64) -> Result<BTreeMap<String, Vec<u8>>, VfsError> {
        let d = self.drive()?;
        Ok(d.extras.get(&ino).map(|x| x.xattrs.clone()).unwrap_or_default())
    }

    /// Sets owner and/or group (`chown`; the caller checked the permission). For each:
    /// `None` leaves it, `Some(None)` makes it the default (the mounting user's, which is
    /// not stored), `Some(Some(id))` stores `id`.
    pub fn set_owner(&self, ino: u64, uid: Option<Option<u32>>, gid: Option<Option<u32>>) -> Result<(), VfsError> {
        self.change_extras(ino, |x| {
            if let Some(uid) = uid {
                x.uid = uid;
            }
            if let Some(gid) = gid {
                x.gid = gid;
            }
            Ok(())
        })
    }

    /// Sets the access time (`utimens`; `None`: the same as the mtime, which is what is
    /// shown when none is stored). Reads never change it: the mount is `noatime`.
    pub fn set_atime(&self, ino: u64, atime: Option<std::time::SystemTime>) -> Result<(), VfsError> {
        let t = atime.map(|atime| {
            let dur = atime.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            UnixTime {
                seconds: dur.as_secs() as i64,
                fractional_nanoseconds: Some(dur.subsec_nanos()).filter(|n| *n != 0),
            }
        });
        self.change_extras(ino, |x| {
            x.atime = t;
            Ok(())
        })
    }

    /// Sets an extended attribute. `create`: fail if it exists (`XATTR_CREATE`);
    /// `replace`: fail if it does not (`XATTR_REPLACE`).
    pub fn set_xattr(&self, ino: u64, name: &str, value: &[u8], create: bool, replace: bool) -> Result<(), VfsError> {
        check_xattr_name(name)?;
        if value.len() > posix::MAX_XATTR_BYTES {
            return Err(VfsError::TooBig);
        }
        self.change_extras(ino, |x| {
            match (x.xattrs.contains_key(name), create, replace) {
                (true, true, _) => return Err(VfsError::Exists(name.to_string())),
                (false, _, true) => return Err(VfsError::NoAttribute),
                _ => {}
            }
            let old = x.xattrs.get(name).map_or(0, |v| name.len() + v.len());
            if x.xattr_bytes() - old + name.len() + value.len() > posix::MAX_XATTR_BYTES {
                return Err(VfsError::NoSpace);
            }
            x.xattrs.insert(name.to_string(), value.to_vec());
            Ok(())
        })
    }

    pub fn remove_xattr(&self, ino: u64, name: &str) -> Result<(), VfsError> {
        check_xattr_name(name)?;
        self.change_extras(ino, |x| x.xattrs.remove(name).map(|_| ()).ok_or(VfsError::NoAttribute))
    }

    /// Adds the name `new_name` in `new_parent` for the file or symlink `ino` (`link(2)`).
    pub fn link(&self, ino: u64, new_parent: u64, new_name: &str) -> Result<Attr, VfsError> {
        check_name(new_name)?;
        {
            let mut d = self.drive_mut()?;
            if !d.nodes.contains_key(&ino) {
                return Err(if self.inodes.is_drive(ino) { VfsError::StaleInode(ino) } else { VfsError::CrossDevice });
            }
            self.resolve(&mut d, ino)?;
            match d.nodes.get(&ino) {
                Some(DNode::File { .. } | DNode::Symlink { .. }) => {}
                Some(DNode::Dir { .. }) => return Err(VfsError::NotPermitted("hard links to directories")),
                _ => return Err(VfsError::NotPermitted("hard links to dag-cbor content")),
            }
            let mut names = d.names_of(ino);
            if names.is_empty() {
                return Err(VfsError::NotFound("the file was unlinked".into()));
            }
            let entries = self.children(&mut d, new_parent)?;
            if entries.contains_key(new_name) {
                return Err(VfsError::Exists(new_name.to_string()));
            }
            entries.insert(new_name.to_string(), ino);
            names.push((new_parent, new_name.to_string()));
            d.links.insert(ino, names);
            d.touch_dir(new_parent);
            d.stamp_ctime(ino, false);
        }
        self.attr(ino)
    }
}

/// Extended attribute names this drive stores: any but `system.*` (ACLs, which the kernel
/// would have to enforce) and the `ipfs.*` and `cidfs.*` names it computes (a stored one
/// would be listed but never read back).
fn check_xattr_name(name: &str) -> Result<(), VfsError> {
    if name.len() > posix::XATTR_NAME_MAX {
        return Err(VfsError::Range);
    }
    if name.starts_with("system.") {
        return Err(VfsError::NotSupported("system.* extended attributes (POSIX ACLs)"));
    }
    if name.starts_with("ipfs.") {
        return Err(VfsError::NotPermitted("ipfs.* extended attributes are computed from the content"));
    }
    if name.starts_with("cidfs.") {
        return Err(VfsError::NotPermitted("cidfs.* extended attributes are computed from the store"));
    }
    Ok(())
}
