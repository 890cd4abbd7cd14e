//! Reading a plugin's files, which are untrusted: whatever sits in the plugins
//! directory under a plugin's name (a symlink to a device, a FIFO, a file of any size)
//! is read only if it is a regular file within its size limit, off the async workers.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// How large a plugin's files may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileLimits {
    /// Largest component (`NAME.wasm`), in bytes.
    pub max_component_bytes: u64,
    /// Largest grant (`NAME.yaml`), in bytes.
    pub max_grant_bytes: u64,
}

/// Default largest component: 64 MiB (a Python component is about 18 MiB).
pub const DEFAULT_MAX_COMPONENT_BYTES: u64 = 64 << 20;
/// Default largest grant: 1 MiB.
pub const DEFAULT_MAX_GRANT_BYTES: u64 = 1 << 20;

impl Default for FileLimits {
    fn default() -> Self {
        Self {
            max_component_bytes: DEFAULT_MAX_COMPONENT_BYTES,
            max_grant_bytes: DEFAULT_MAX_GRANT_BYTES,
        }
    }
}

/// Reads `path` (following symlinks, as a ConfigMap volume's are) if it is a regular
/// file of at most `limit` bytes. A FIFO is opened without blocking and refused; a file
/// that grows past the limit while it is read is refused too. Errors say what the file
/// is, never what it holds.
pub fn read_capped(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "not a regular file (a {}), so it is not read",
                describe(&meta.file_type())
            ),
        ));
    }
    let too_large = |size: u64| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{size} bytes or more, over the limit of {limit}"),
        )
    };
    if meta.len() > limit {
        return Err(too_large(meta.len()));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

fn describe(file_type: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if file_type.is_dir() {
        "directory"
    } else if file_type.is_fifo() {
        "FIFO"
    } else if file_type.is_char_device() {
        "character device"
    } else if file_type.is_block_device() {
        "block device"
    } else if file_type.is_socket() {
        "socket"
    } else {
        "special file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_files_within_the_limit_are_read_and_nothing_else_is() {
        let dir = tempfile::tempdir().unwrap();
        let small = dir.path().join("small");
        std::fs::write(&small, b"0123456789").unwrap();
        assert_eq!(read_capped(&small, 10).unwrap(), b"0123456789");
        let err = read_capped(&small, 9).unwrap_err().to_string();
        assert!(err.contains("over the limit of 9"), "{err}");

        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&small, &link).unwrap();
        assert_eq!(read_capped(&link, 10).unwrap(), b"0123456789");

        // Neither blocks: a FIFO with no writer, a device without end.
        let fifo = dir.path().join("fifo");
        let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid, NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        let err = read_capped(&fifo, 10).unwrap_err().to_string();
        assert!(err.contains("FIFO"), "{err}");
        let zero = dir.path().join("zero");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        let err = read_capped(&zero, 10).unwrap_err().to_string();
        assert!(err.contains("character device"), "{err}");
        let err = read_capped(dir.path(), 10).unwrap_err().to_string();
        assert!(err.contains("directory"), "{err}");
    }
}
