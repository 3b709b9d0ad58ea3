//! Hot copies: whole files kept as plain local files, so the kernel can read them itself.
//!
//! FUSE passthrough lets the kernel serve `read`/`mmap` of a file of the mount straight
//! from another local file, with no round trip to cidfs and no copy through it: a read
//! costs what it costs on the local filesystem. It needs a file holding exactly the bytes
//! of the mounted file at the same offsets. Blocks in segments are not that: a segment is a
//! CAR (section headers between leaves, dag-pb framing around leaf bytes, leaves shared by
//! many files), and it must stay one, since a sealed segment is a Filecoin piece payload.
//! So a hot copy is a *second*, plain copy of a file's bytes, `hot/<file CID>`:
//!
//! - a cache, never the only copy of anything: bounded by a byte cap (`--hot-size`), the
//!   least recently opened copy dropped first, all of them dropped with no loss;
//! - made only from bytes that hashed to the CID (the importer's own input during `add`,
//!   or blocks read back from the store), written under a temporary name and renamed;
//! - not synced as they are made (an fsync per copy made `cidfs add` a third slower):
//!   before a copy is renamed into place, a line `<boot id> <CID>` is appended (and
//!   synced) to `hot/.unsynced`. A process that dies leaves its copies in the page cache,
//!   whole; only a crash of the machine can tear them. So the next open syncs the copies
//!   listed under the current boot id and deletes those listed under another one;
//! - trusted as far as segments are, and checked for its length on every use (a copy of
//!   the wrong length is deleted, and the read goes the ordinary way).
//!
//! The directory is the index: names are CIDs, lengths are file lengths, the last use is
//! the file's mtime. Which files get a copy, and when, is the mount's business (see
//! `vfs::hot`); this module only keeps them.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cid::Cid;

/// Files smaller than this get no hot copy: the kernel page cache serves them well, and
/// a FUSE read of a few blocks costs little next to the open.
pub const HOT_MIN_BYTES: u64 = 1 << 20;

/// Default cap of the hot copies on disk.
pub const DEFAULT_HOT_CAP: u64 = 4 << 30;

/// A copy's recorded last use is refreshed on disk at most this often.
const TOUCH_EVERY: Duration = Duration::from_secs(60);

const TMP_PREFIX: &str = ".tmp-";
/// Copies placed but not yet synced, one `<boot id> <CID>` line each.
const UNSYNCED: &str = ".unsynced";
/// Lines `.unsynced` may hold before its copies are synced and it starts over.
const JOURNAL_MAX: usize = 1024;

/// This boot of the machine (empty if unknown: every unsynced copy is then distrusted).
fn boot_id() -> String {
    fs::read_to_string("/proc/sys/kernel/random/boot_id").map(|s| s.trim().to_string()).unwrap_or_default()
}

/// Settles the copies the last owner placed without syncing (see the module docs).
fn settle_unsynced(dir: &Path) -> std::io::Result<()> {
    let journal = dir.join(UNSYNCED);
    let text = match fs::read_to_string(&journal) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let now = boot_id();
    for line in text.lines() {
        let Some((boot, name)) = line.split_once(' ') else { continue };
        let Ok(cid) = Cid::try_from(name) else { continue };
        let path = dir.join(cid.to_string());
        if boot == now && !now.is_empty() {
            if let Ok(f) = File::open(&path) {
                f.sync_data()?;
            }
        } else if fs::remove_file(&path).is_ok() {
            log::info!("hot copy {cid} was written before the machine restarted: dropped");
        }
    }
    File::open(dir)?.sync_all()?;
    fs::remove_file(&journal)
}

struct Entry {
    len: u64,
    /// Last use, in seconds since the epoch (the file's mtime on disk, roughly).
    used: u64,
}

#[derive(Default)]
struct State {
    entries: HashMap<Cid, Entry>,
    bytes: u64,
    /// Copies being written now.
    pending: HashSet<Cid>,
    evicted: u64,
}

/// The hot copies of one store (`$CIDFS_HOME/hot`).
pub struct HotFiles {
    dir: PathBuf,
    cap: AtomicU64,
    /// The disk's reserve: copies never take it, and give way when the disk runs low.
    disk: Arc<super::reserve::Disk>,
    state: Mutex<State>,
    tmp_serial: AtomicU64,
    /// `hot/.unsynced` (once this process placed a copy) and the copies it lists.
    journal: Mutex<(Option<File>, Vec<Cid>)>,
    /// Lines the journal may hold before it starts over ([`JOURNAL_MAX`]; tests shrink it).
    journal_max: usize,
    boot_id: String,
}

/// The hot copies as `cidfs status` shows them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HotUsage {
    pub files: u64,
    pub bytes: u64,
    pub cap: u64,
    /// Copies dropped to stay under the cap since the store was opened.
    pub evicted: u64,
}

impl HotFiles {
    /// Opens the hot copies in `dir` (created if needed), deleting temporaries a crash
    /// left and anything not named by a CID.
    pub fn open(dir: &Path) -> std::io::Result<HotFiles> {
        HotFiles::open_on(dir, Arc::default())
    }

    /// [`open`](Self::open), keeping `disk`'s reserve free.
    pub fn open_on(dir: &Path, disk: Arc<super::reserve::Disk>) -> std::io::Result<HotFiles> {
        super::private_dir(dir)?;
        settle_unsynced(dir)?;
        let mut state = State::default();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            if name == UNSYNCED {
                continue;
            }
            let cid = name.to_str().filter(|n| !n.starts_with(TMP_PREFIX)).and_then(|n| Cid::try_from(n).ok());
            let meta = entry.metadata()?;
            match cid {
                Some(cid) if meta.is_file() => {
                    let used = meta.modified().ok().and_then(|m| m.duration_since(UNIX_EPOCH).ok());
                    state.bytes += meta.len();
                    state.entries.insert(cid, Entry { len: meta.len(), used: used.map_or(0, |d| d.as_secs()) });
                }
                _ => {
                    log::debug!("hot copies: removing stray {}", entry.path().display());
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
        Ok(HotFiles {
            dir: dir.to_path_buf(),
            cap: AtomicU64::new(DEFAULT_HOT_CAP),
            disk,
            state: Mutex::new(state),
            tmp_serial: AtomicU64::new(0),
            journal: Mutex::new((None, Vec::new())),
            journal_max: JOURNAL_MAX,
            boot_id: boot_id(),
        })
    }

    /// Caps the copies at `bytes` (0: keep none); drops the least recently used beyond it.
    pub fn set_cap(&self, bytes: u64) {
        self.cap.store(bytes, Ordering::Relaxed);
        self.evict_over_cap(None);
    }

    fn path(&self, cid: &Cid) -> PathBuf {
        self.dir.join(cid.to_string())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("lock poisoned")
    }

    /// The hot copy of the file `cid`, `len` bytes long, opened read-only, if there is one.
    pub fn get(&self, cid: &Cid, len: u64) -> Option<File> {
        let touch = {
            let mut st = self.lock();
            let e = st.entries.get_mut(cid)?;
            let now = super::unix_now();
            let touch = now.saturating_sub(e.used) >= TOUCH_EVERY.as_secs();
            e.used = now;
            touch
        };
        let path = self.path(cid);
        let file = File::open(&path).ok().filter(|f| f.metadata().is_ok_and(|m| m.len() == len));
        let Some(file) = file else {
            log::warn!("hot copy {} is missing or not {len} bytes long: dropped", path.display());
            self.discard(cid);
            return None;
        };
        if touch {
            let _ = file.set_modified(SystemTime::now()); // recency only: best effort
        }
        Some(file)
    }

    /// Whether a copy `len` bytes long may be made: big enough, at most half the cap, and
    /// (`room_only`: for imports and written files, which are not uses) fitting in the room
    /// left without evicting anything.
    fn admits(&self, st: &State, len: u64, room_only: bool) -> bool {
        let cap = self.cap.load(Ordering::Relaxed);
        len >= HOT_MIN_BYTES
            && len <= cap / 2
            && (!room_only || (st.bytes + len <= cap && self.disk.fits(&self.dir, len)))
    }

    /// Drops the least recently used copies until `need` more bytes fit on the disk above
    /// its reserve (or none is left); returns the bytes freed.
    pub fn give_way(&self, need: u64) -> u64 {
        let mut freed = 0;
        while !self.disk.fits(&self.dir, need) {
            let Some(len) = self.drop_least_used() else { break };
            freed += len;
        }
        if freed > 0 {
            log::info!("the disk is low: dropped {freed} bytes of hot copies to keep its reserve free");
        }
        freed
    }

    /// Drops the least recently used copy; its length, or `None` if there is none.
    pub fn drop_least_used(&self) -> Option<u64> {
        let (victim, len) = {
            let st = self.lock();
            st.entries
                .iter()
                .filter(|(c, _)| !st.pending.contains(c))
                .min_by_key(|(_, e)| e.used)
                .map(|(c, e)| (*c, e.len))
        }?;
        self.discard(&victim);
        self.lock().evicted += 1;
        Some(len)
    }

    /// Whether a copy of the file `cid` (`len` bytes) would be made now for a file read
    /// whole: [admitted](Self::admits), not there and not being written.
    pub fn wants(&self, cid: &Cid, len: u64) -> bool {
        let st = self.lock();
        self.admits(&st, len, false) && !st.entries.contains_key(cid) && !st.pending.contains(cid)
    }

    /// Starts writing the copy of the file `cid`, `len` bytes long (`None` if it is not
    /// [wanted](Self::wants)). The copy exists once [`HotWriter::finish`] returns.
    pub fn writer(&self, cid: &Cid, len: u64) -> std::io::Result<Option<HotWriter<'_>>> {
        if !self.wants(cid, len) {
            return Ok(None);
        }
        // a use may push older copies out, but never into the disk's reserve
        self.give_way(len);
        if !self.disk.fits(&self.dir, len) || !self.lock().pending.insert(*cid) {
            return Ok(None);
        }
        self.start(Some(*cid), len)
    }

    /// Starts writing the copy of a file whose CID is known only once its bytes are (an
    /// import): name it with [`HotWriter::finish_as`]. Only if it fits in the room left:
    /// an import is not a use, and a large one must not churn through the copies of the
    /// files that are read.
    pub fn anonymous_writer(&self, len: u64) -> std::io::Result<Option<HotWriter<'_>>> {
        if !self.admits(&self.lock(), len, true) {
            return Ok(None);
        }
        self.start(None, len)
    }

    /// A fresh temporary name in the directory (deleted by the next open if left).
    fn tmp_path(&self) -> PathBuf {
        let serial = self.tmp_serial.fetch_add(1, Ordering::Relaxed);
        self.dir.join(format!("{TMP_PREFIX}{}-{serial}", std::process::id()))
    }

    fn start(&self, cid: Option<Cid>, len: u64) -> std::io::Result<Option<HotWriter<'_>>> {
        let tmp = self.tmp_path();
        let file = match super::private_file().write(true).create(true).truncate(true).open(&tmp) {
            Ok(f) => f,
            Err(e) => {
                if let Some(cid) = &cid {
                    self.lock().pending.remove(cid);
                }
                return Err(e);
            }
        };
        Ok(Some(HotWriter { hot: self, cid, len, tmp, out: Some(BufWriter::with_capacity(1 << 20, file)) }))
    }

    /// Makes the finished temporary `tmp` the copy of `cid`: journals it as unsynced,
    /// renames it into place and counts it.
    fn install(&self, tmp: &Path, cid: &Cid, len: u64) -> std::io::Result<()> {
        self.note_unsynced(cid)?;
        fs::rename(tmp, self.path(cid))?;
        let mut st = self.lock();
        st.bytes += len;
        st.entries.insert(*cid, Entry { len, used: super::unix_now() });
        Ok(())
    }

    /// Records (durably) that the copy of `cid` is about to be placed unsynced.
    fn note_unsynced(&self, cid: &Cid) -> std::io::Result<()> {
        let mut journal = self.journal.lock().expect("lock poisoned");
        let (file, listed) = &mut *journal;
        if file.is_none() {
            let f = super::private_file().create(true).append(true).open(self.dir.join(UNSYNCED))?;
            File::open(&self.dir)?.sync_all()?;
            *file = Some(f);
        }
        let f = file.as_mut().expect("opened above");
        if listed.len() >= self.journal_max {
            // settle what is listed, so the list starts over
            for listed in listed.drain(..) {
                if let Ok(copy) = File::open(self.path(&listed)) {
                    copy.sync_data()?;
                }
            }
            f.set_len(0)?;
        }
        f.write_all(format!("{} {cid}\n", self.boot_id).as_bytes())?;
        f.sync_data()?;
        listed.push(*cid);
        Ok(())
    }

    /// Keeps `file` itself (an anonymous `O_TMPFILE` holding exactly the `len` bytes of the
    /// file `cid`, that nobody will write again) as the copy: a link, no bytes copied. Like
    /// an import, only into the room left under the cap. Returns whether it was kept.
    pub fn adopt(&self, cid: &Cid, len: u64, file: &File) -> std::io::Result<bool> {
        use std::os::fd::AsRawFd;
        {
            let mut st = self.lock();
            if !self.admits(&st, len, true)
                || st.entries.contains_key(cid)
                || file.metadata()?.len() != len
                || !st.pending.insert(*cid)
            {
                return Ok(false);
            }
        }
        let tmp = self.tmp_path();
        let placed = nix::unistd::linkat(
            nix::fcntl::AT_FDCWD,
            format!("/proc/self/fd/{}", file.as_raw_fd()).as_str(),
            nix::fcntl::AT_FDCWD,
            &tmp,
            nix::fcntl::AtFlags::AT_SYMLINK_FOLLOW,
        )
        .map_err(std::io::Error::from)
        .and_then(|_| self.install(&tmp, cid, len));
        self.lock().pending.remove(cid);
        if placed.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        placed.map(|_| true)
    }

    /// Every copy: (file CID, length).
    pub fn list(&self) -> Vec<(Cid, u64)> {
        self.lock().entries.iter().map(|(c, e)| (*c, e.len)).collect()
    }

    /// Deletes the copy of `cid` (one found bad, stale or evicted).
    pub fn discard(&self, cid: &Cid) {
        let mut st = self.lock();
        if let Some(e) = st.entries.remove(cid) {
            st.bytes -= e.len;
        }
        drop(st);
        let _ = fs::remove_file(self.path(cid));
    }

    /// Drops the least recently used copies (never `keep`) until the cap holds.
    fn evict_over_cap(&self, keep: Option<&Cid>) {
        let cap = self.cap.load(Ordering::Relaxed);
        loop {
            let victim = {
                let st = self.lock();
                if st.bytes <= cap {
                    return;
                }
                st.entries.iter().filter(|(c, _)| Some(*c) != keep).min_by_key(|(_, e)| e.used).map(|(c, _)| *c)
            };
            let Some(victim) = victim else { return };
            self.discard(&victim);
            self.lock().evicted += 1;
        }
    }

    /// Keeps only the copies of files `keep` says yes to; returns (copies, bytes) removed.
    pub fn retain(&self, keep: impl Fn(&Cid) -> bool) -> (u64, u64) {
        let doomed: Vec<(Cid, u64)> =
            self.lock().entries.iter().filter(|(c, _)| !keep(c)).map(|(c, e)| (*c, e.len)).collect();
        for (cid, _) in &doomed {
            self.discard(cid);
        }
        (doomed.len() as u64, doomed.iter().map(|(_, l)| l).sum())
    }

    pub fn usage(&self) -> HotUsage {
        let st = self.lock();
        HotUsage {
            files: st.entries.len() as u64,
            bytes: st.bytes,
            cap: self.cap.load(Ordering::Relaxed),
            evicted: st.evicted,
        }
    }
}

/// A hot copy being written: bytes go to a temporary file that becomes the copy on
/// [`finish`](Self::finish); dropped unfinished, it leaves nothing.
pub struct HotWriter<'a> {
    hot: &'a HotFiles,
    /// The file's CID (`None` until [`HotWriter::finish_as`] names it).
    cid: Option<Cid>,
    len: u64,
    tmp: PathBuf,
    out: Option<BufWriter<File>>,
}

impl Write for HotWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.out.as_mut().expect("written after finish").write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.out.as_mut().expect("written after finish").write_all(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.as_mut().expect("written after finish").flush()
    }
}

impl HotWriter<'_> {
    /// Makes the copy: checks it is exactly as long as the file, syncs it, renames it into
    /// place, and drops older copies beyond the cap.
    pub fn finish(mut self) -> std::io::Result<()> {
        let cid = self.cid.expect("an anonymous copy is finished with finish_as");
        let file = self.out.take().expect("finished once").into_inner().map_err(|e| e.into_error())?;
        let done = self.place(&cid, file);
        if done.is_err() {
            let _ = fs::remove_file(&self.tmp);
        }
        self.hot.lock().pending.remove(&cid);
        done
    }

    /// Finishes a copy started with [`HotFiles::anonymous_writer`] as the copy of `cid`
    /// (dropped if that file has one already).
    pub fn finish_as(mut self, cid: &Cid) -> std::io::Result<()> {
        {
            let mut st = self.hot.lock();
            if st.entries.contains_key(cid) || !st.pending.insert(*cid) {
                return Ok(()); // made, or being made, elsewhere: this one is dropped
            }
        }
        self.cid = Some(*cid);
        self.finish()
    }

    fn place(&self, cid: &Cid, file: File) -> std::io::Result<()> {
        let written = file.metadata()?.len();
        if written != self.len {
            return Err(std::io::Error::other(format!("hot copy of {cid}: wrote {written} of {} bytes", self.len)));
        }
        drop(file);
        self.hot.install(&self.tmp, cid, self.len)?;
        self.hot.evict_over_cap(Some(cid));
        Ok(())
    }
}

impl Drop for HotWriter<'_> {
    fn drop(&mut self) {
        if self.out.is_some() {
            drop(self.out.take());
            let _ = fs::remove_file(&self.tmp);
            if let Some(cid) = &self.cid {
                self.hot.lock().pending.remove(cid);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::{Block, RAW};

    fn cid(n: u8) -> Cid {
        *Block::encode(cid::Version::V1, RAW, vec![n]).unwrap().cid()
    }

    fn copies_on_disk(dir: &Path) -> usize {
        fs::read_dir(dir)
            .unwrap()
            .filter(|e| !e.as_ref().unwrap().file_name().to_string_lossy().starts_with('.'))
            .count()
    }

    fn make(hot: &HotFiles, c: &Cid, len: u64) {
        let mut w = hot.writer(c, len).unwrap().expect("wanted");
        w.write_all(&vec![7u8; len as usize]).unwrap();
        w.finish().unwrap();
    }

    #[test]
    fn a_copy_is_served_only_at_its_length_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let hot = HotFiles::open(dir.path()).unwrap();
        let a = cid(1);
        assert!(hot.get(&a, HOT_MIN_BYTES).is_none());
        make(&hot, &a, HOT_MIN_BYTES);
        assert!(!hot.wants(&a, HOT_MIN_BYTES), "there already");
        assert_eq!(hot.get(&a, HOT_MIN_BYTES).unwrap().metadata().unwrap().len(), HOT_MIN_BYTES);
        drop(hot);
        let hot = HotFiles::open(dir.path()).unwrap();
        assert_eq!(hot.usage().files, 1);
        assert!(hot.get(&a, HOT_MIN_BYTES + 1).is_none(), "a copy of the wrong length is not used");
        assert!(hot.get(&a, HOT_MIN_BYTES).is_none(), "and it is gone");
        assert_eq!(hot.usage(), HotUsage { files: 0, bytes: 0, cap: DEFAULT_HOT_CAP, evicted: 0 });
    }

    #[test]
    fn unfinished_or_short_copies_leave_nothing_and_strays_are_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let hot = HotFiles::open(dir.path()).unwrap();
        let a = cid(1);
        let mut w = hot.writer(&a, HOT_MIN_BYTES).unwrap().unwrap();
        assert!(hot.writer(&a, HOT_MIN_BYTES).unwrap().is_none(), "one writer per file");
        w.write_all(b"short").unwrap();
        assert!(w.finish().is_err(), "a copy shorter than the file is refused");
        let w = hot.writer(&a, HOT_MIN_BYTES).unwrap().unwrap();
        drop(w);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
        fs::write(dir.path().join(".tmp-1-1"), b"x").unwrap();
        fs::write(dir.path().join("not-a-cid"), b"x").unwrap();
        let hot = HotFiles::open(dir.path()).unwrap();
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
        assert!(hot.wants(&a, HOT_MIN_BYTES));
        assert!(!hot.wants(&a, HOT_MIN_BYTES - 1), "small files get none");
    }

    #[test]
    fn an_import_names_its_copy_when_it_knows_the_cid() {
        let dir = tempfile::tempdir().unwrap();
        let hot = HotFiles::open(dir.path()).unwrap();
        let a = cid(1);
        let mut w = hot.anonymous_writer(HOT_MIN_BYTES).unwrap().unwrap();
        w.write_all(&vec![1u8; HOT_MIN_BYTES as usize]).unwrap();
        w.finish_as(&a).unwrap();
        assert!(hot.get(&a, HOT_MIN_BYTES).is_some());
        let mut again = hot.anonymous_writer(HOT_MIN_BYTES).unwrap().unwrap();
        again.write_all(&vec![2u8; HOT_MIN_BYTES as usize]).unwrap();
        again.finish_as(&a).unwrap();
        let mut f = hot.get(&a, HOT_MIN_BYTES).unwrap();
        let mut first = [0u8; 1];
        std::io::Read::read_exact(&mut f, &mut first).unwrap();
        assert_eq!(first, [1], "an existing copy is kept");
        assert_eq!(copies_on_disk(dir.path()), 1);
        assert!(hot.anonymous_writer(HOT_MIN_BYTES - 1).unwrap().is_none());
        hot.set_cap(2 * HOT_MIN_BYTES);
        assert!(hot.anonymous_writer(HOT_MIN_BYTES).unwrap().is_some(), "room for one more");
        make(&hot, &cid(2), HOT_MIN_BYTES);
        assert!(hot.anonymous_writer(HOT_MIN_BYTES).unwrap().is_none(), "an import evicts nothing");
        assert!(hot.wants(&cid(3), HOT_MIN_BYTES), "a file read whole may");
    }

    #[test]
    fn copies_placed_before_a_restart_of_the_machine_are_dropped_and_others_synced() {
        let dir = tempfile::tempdir().unwrap();
        let hot = HotFiles::open(dir.path()).unwrap();
        let (a, b) = (cid(1), cid(2));
        make(&hot, &a, HOT_MIN_BYTES);
        make(&hot, &b, HOT_MIN_BYTES);
        drop(hot);
        let journal = fs::read_to_string(dir.path().join(UNSYNCED)).unwrap();
        assert_eq!(journal.lines().count(), 2, "{journal}");
        // as if `a` had been placed during an earlier boot
        let earlier = journal.replacen(&boot_id(), "an-earlier-boot", 1);
        fs::write(dir.path().join(UNSYNCED), earlier).unwrap();
        let hot = HotFiles::open(dir.path()).unwrap();
        assert!(hot.get(&a, HOT_MIN_BYTES).is_none(), "possibly torn: dropped");
        assert!(hot.get(&b, HOT_MIN_BYTES).is_some(), "this boot: kept (and synced)");
        assert!(!dir.path().join(UNSYNCED).exists());

        let mut hot = hot;
        hot.journal_max = 2;
        for n in 3..8 {
            make(&hot, &cid(n), HOT_MIN_BYTES);
        }
        let journal = fs::read_to_string(dir.path().join(UNSYNCED)).unwrap();
        assert_eq!(journal.lines().count(), 1, "the journal starts over once its copies are synced: {journal}");
    }

    #[test]
    fn an_anonymous_file_is_adopted_as_a_copy_by_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let hot = HotFiles::open(&dir.path().join("hot")).unwrap();
        let spill = tempfile::tempfile_in(dir.path()).unwrap();
        spill.set_len(HOT_MIN_BYTES).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&spill, b"spilled", 0).unwrap();
        let a = cid(1);
        assert!(!hot.adopt(&a, HOT_MIN_BYTES + 1, &spill).unwrap(), "a length that is not the file's");
        assert!(hot.adopt(&a, HOT_MIN_BYTES, &spill).unwrap());
        assert!(!hot.adopt(&a, HOT_MIN_BYTES, &spill).unwrap(), "once");
        let copy = hot.get(&a, HOT_MIN_BYTES).unwrap();
        let mut head = [0u8; 7];
        std::os::unix::fs::FileExt::read_exact_at(&copy, &mut head, 0).unwrap();
        assert_eq!(&head, b"spilled");
        hot.set_cap(HOT_MIN_BYTES * 2);
        let other = tempfile::tempfile_in(dir.path()).unwrap();
        other.set_len(HOT_MIN_BYTES).unwrap();
        assert!(hot.adopt(&cid(2), HOT_MIN_BYTES, &other).unwrap(), "room for one more");
        assert!(!hot.adopt(&cid(3), HOT_MIN_BYTES, &other).unwrap(), "no room left");
        assert_eq!(hot.usage().evicted, 0, "adopting evicts nothing");
    }

    #[test]
    fn the_cap_drops_the_least_recently_used_copy() {
        let dir = tempfile::tempdir().unwrap();
        let hot = HotFiles::open(dir.path()).unwrap();
        hot.set_cap(3 * HOT_MIN_BYTES);
        let (a, b, c) = (cid(1), cid(2), cid(3));
        make(&hot, &a, HOT_MIN_BYTES);
        make(&hot, &b, HOT_MIN_BYTES);
        hot.lock().entries.get_mut(&a).unwrap().used = 1; // a: long unused
        hot.lock().entries.get_mut(&b).unwrap().used = 2;
        make(&hot, &c, HOT_MIN_BYTES);
        assert!(!hot.wants(&a, HOT_MIN_BYTES) && hot.usage().files == 3);
        assert!(!hot.wants(&cid(4), 2 * HOT_MIN_BYTES), "a file over half the cap gets none");
        hot.set_cap(2 * HOT_MIN_BYTES);
        assert!(hot.get(&a, HOT_MIN_BYTES).is_none(), "least recently used: dropped");
        assert!(hot.get(&b, HOT_MIN_BYTES).is_some() && hot.get(&c, HOT_MIN_BYTES).is_some());
        assert_eq!(hot.usage().evicted, 1);
        assert_eq!(hot.retain(|x| *x == b), (1, HOT_MIN_BYTES));
        assert_eq!(copies_on_disk(dir.path()), 1);
        hot.set_cap(0);
        assert_eq!(hot.usage().files, 0);
    }
}
