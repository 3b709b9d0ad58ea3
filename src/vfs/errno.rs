//! Every errno the filesystem returns, in one table: what each error of each layer means
//! to a POSIX caller. The lower layers (block, car, store, fetch, unixfs) only say what
//! went wrong; the errno is decided here, once (mountpoint-s3's `ToErrno` is the model).
//! SEMANTICS.md lists them; `every_error_has_the_documented_errno` pins them.

use super::VfsError;
use crate::block::BlockError;
use crate::car::CarError;
use crate::fetch::FetchError;
use crate::store::StoreError;
use crate::unixfs::UnixfsError;

/// The errno a filesystem caller sees for an error.
pub trait ToErrno {
    fn errno(&self) -> i32;
}

/// An I/O error's own errno, else `EIO`.
fn io(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

impl ToErrno for VfsError {
    fn errno(&self) -> i32 {
        match self {
            VfsError::Unixfs(e) => e.errno(),
            VfsError::StaleInode(_) => libc::ESTALE,
            VfsError::NotFound(_) => libc::ENOENT,
            VfsError::NotADirectory => libc::ENOTDIR,
            VfsError::IsADirectory => libc::EISDIR,
            VfsError::NotASymlink => libc::EINVAL,
            VfsError::ReadOnly => libc::EROFS,
            VfsError::NoAttribute => libc::ENODATA,
            VfsError::Range => libc::ERANGE,
            VfsError::BadHandle(_) => libc::EBADF,
            VfsError::NameTooLong => libc::ENAMETOOLONG,
            VfsError::InvalidName(_) => libc::EINVAL,
            VfsError::Exists(_) => libc::EEXIST,
            VfsError::NotEmpty => libc::ENOTEMPTY,
            VfsError::Io(e) => io(e),
            VfsError::Store(e) => e.errno(),
            VfsError::NotSupported(_) => libc::ENOTSUP,
            VfsError::NotPermitted(_) => libc::EPERM,
            VfsError::NoSpace => libc::ENOSPC,
            VfsError::CrossDevice => libc::EXDEV,
            VfsError::BadSidecar { .. } => libc::EIO,
            VfsError::TooBig => libc::E2BIG,
            VfsError::Busy => libc::ETXTBSY,
            VfsError::FileTooBig => libc::EFBIG,
        }
    }
}

impl ToErrno for UnixfsError {
    fn errno(&self) -> i32 {
        match self {
            UnixfsError::Fetch(e) => e.errno(),
            UnixfsError::Decode { .. } | UnixfsError::TooDeep { .. } => libc::EIO,
            UnixfsError::NoSuchEntry { .. } => libc::ENOENT,
            UnixfsError::NotADirectory { .. } => libc::ENOTDIR,
            UnixfsError::IsADirectory { .. } => libc::EISDIR,
            UnixfsError::Output(e) => io(e),
        }
    }
}

impl ToErrno for FetchError {
    /// A block no tier could deliver is an I/O error: the data exists, it is not here.
    fn errno(&self) -> i32 {
        match self {
            FetchError::NotFound(_) | FetchError::Unavailable { .. } => libc::EIO,
            FetchError::Store(e) => e.errno(),
        }
    }
}

impl ToErrno for StoreError {
    fn errno(&self) -> i32 {
        match self {
            StoreError::InUse { .. } => libc::EBUSY,
            StoreError::Io { source, .. } => io(source),
            StoreError::Db(_) | StoreError::Corrupt(_) => libc::EIO,
        }
    }
}

impl ToErrno for BlockError {
    /// A block that does not match its CID (or is malformed) is bad data read: `EIO`.
    fn errno(&self) -> i32 {
        libc::EIO
    }
}

impl ToErrno for CarError {
    fn errno(&self) -> i32 {
        match self {
            CarError::Io(e) => io(e),
            _ => libc::EINVAL,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cid::Cid;

    #[test]
    fn every_error_has_the_documented_errno() {
        let cid = Cid::default();
        let cases: Vec<(UnixfsError, i32)> = vec![
            (UnixfsError::Fetch(FetchError::NotFound(cid)), libc::EIO),
            (UnixfsError::Decode { cid, source: Box::new(crate::unixfs::DecodeError::NotUnixfs) }, libc::EIO),
            (UnixfsError::TooDeep { cid }, libc::EIO),
            (UnixfsError::NoSuchEntry { path: "x".into() }, libc::ENOENT),
            (UnixfsError::NotADirectory { cid }, libc::ENOTDIR),
            (UnixfsError::IsADirectory { cid }, libc::EISDIR),
            (UnixfsError::Output(std::io::Error::from_raw_os_error(libc::ENOSPC)), libc::ENOSPC),
        ];
        for (err, errno) in cases {
            assert_eq!(err.errno(), errno, "{err}");
        }
        let car = CarError::Truncated { offset: 1, what: "x" };
        assert_eq!(car.errno(), libc::EINVAL);
        let busy = StoreError::InUse { path: "/x".into(), holder: None };
        assert_eq!(busy.errno(), libc::EBUSY);
        let full = StoreError::Io { path: "/x".into(), source: std::io::Error::from_raw_os_error(libc::ENOSPC) };
        assert_eq!(full.errno(), libc::ENOSPC);
        assert_eq!(VfsError::Store(full).errno(), libc::ENOSPC);
        assert_eq!(VfsError::FileTooBig.errno(), libc::EFBIG);
        assert_eq!(VfsError::NameTooLong.errno(), libc::ENAMETOOLONG);
        assert_eq!(FetchError::Unavailable { cid, reason: String::new() }.errno(), libc::EIO);
    }
}
