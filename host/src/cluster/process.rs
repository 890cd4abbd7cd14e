//! A child process in its own process group, logging to a file, stopped as a group.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::ClusterError;

/// How long a stopped group gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// How much of a log goes into an error message.
const LOG_TAIL_BYTES: u64 = 4096;

/// A running child process that leads its own process group.
#[derive(Debug)]
pub struct GroupProcess {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl GroupProcess {
    /// Starts `program` with `args` in a new process group, stdout and stderr appended to
    /// `log`.
    ///
    /// The child is also asked to receive SIGKILL when the thread that spawned it exits,
    /// so a crashed host (or test binary) leaves no control plane behind; callers must
    /// therefore spawn from a thread that lives as long as the process should.
    pub fn spawn(
        name: &'static str,
        program: &Path,
        args: &[String],
        log: &Path,
    ) -> Result<Self, ClusterError> {
        let log_file = File::options().create(true).append(true).open(log)?;
        let mut command = Command::new(program);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .process_group(0);
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().map_err(|source| ClusterError::Spawn {
            name,
            program: program.to_path_buf(),
            source,
        })?;
        Ok(Self {
            name,
            child,
            log: log.to_path_buf(),
        })
    }

    /// The process (and group) id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// An error if the process has exited, with the tail of its log.
    pub fn ensure_running(&mut self) -> Result<(), ClusterError> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => Err(self.exited(status)),
        }
    }

    fn exited(&self, status: ExitStatus) -> ClusterError {
        ClusterError::ProcessExited {
            name: self.name,
            status,
            log: self.log.clone(),
            log_tail: self.log_tail(),
        }
    }

    /// The last few KiB of the process's log.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log)
    }

    /// Stops the whole process group: SIGTERM, then SIGKILL after a grace period.
    pub fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            signal_group(self.pid(), libc::SIGKILL);
            return;
        }
        signal_group(self.pid(), libc::SIGTERM);
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                // The leader is gone; make sure nothing it started outlives it.
                signal_group(self.pid(), libc::SIGKILL);
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        tracing::warn!(
            process = self.name,
            "did not stop within {STOP_GRACE:?}, killing"
        );
        signal_group(self.pid(), libc::SIGKILL);
        let _ = self.child.wait();
    }
}

impl Drop for GroupProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sends `signal` to the process group led by `pid`. Async-signal-safe, so it may be
/// called from `atexit` handlers.
pub fn signal_group(pid: u32, signal: libc::c_int) {
    // SAFETY: killpg has no memory-safety preconditions.
    unsafe {
        libc::killpg(pid as libc::pid_t, signal);
    }
}

fn log_tail(path: &Path) -> String {
    let mut tail = String::new();
    if let Ok(mut file) = File::open(path) {
        let len = file.metadata().map(|meta| meta.len()).unwrap_or(0);
        let _ = file.seek(SeekFrom::Start(len.saturating_sub(LOG_TAIL_BYTES)));
        let mut bytes = Vec::new();
        let _ = file.read_to_end(&mut bytes);
        tail = String::from_utf8_lossy(&bytes).into_owned();
    }
    tail
}
