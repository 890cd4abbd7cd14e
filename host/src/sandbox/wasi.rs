//! WASI for a guest: linked so that components built for WASI run, with nothing granted.
//! No preopened directories, no network, no environment, no arguments; stdout and
//! stderr become log lines.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder};

use super::guest_log::{CallOutput, MAX_LINE_BYTES, PluginLog};
use crate::reconciler::LogLevel;

/// How much of the guest's stderr is kept for error messages (a panic message, say).
const STDERR_TAIL_BYTES: usize = 2048;

/// A WASI context that grants nothing, with stdout and stderr going to `log` and
/// counted in `output`.
pub fn context(
    log: &Arc<PluginLog>,
    object: &str,
    stderr_tail: &StderrTail,
    output: &CallOutput,
) -> WasiCtx {
    let stream = |level, tail| GuestOutput::new(log, object, level, tail, output.clone());
    WasiCtxBuilder::new()
        .stdout(stream(LogLevel::Info, None))
        .stderr(stream(LogLevel::Warn, Some(stderr_tail.clone())))
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .build()
}

/// The last bytes the guest wrote to stderr during one call.
#[derive(Debug, Clone, Default)]
pub struct StderrTail(Arc<Mutex<String>>);

impl StderrTail {
    /// What was kept, trimmed.
    pub fn get(&self) -> String {
        self.0
            .lock()
            .expect("stderr tail poisoned")
            .trim()
            .to_string()
    }

    fn push(&self, text: &str) {
        let mut tail = self.0.lock().expect("stderr tail poisoned");
        tail.push_str(text);
        if tail.len() > STDERR_TAIL_BYTES {
            let mut cut = tail.len() - STDERR_TAIL_BYTES;
            while !tail.is_char_boundary(cut) {
                cut += 1;
            }
            tail.drain(..cut);
        }
    }
}

/// One of the guest's output streams, split into lines.
#[derive(Clone)]
struct GuestOutput {
    inner: Arc<Mutex<LineBuffer>>,
}

struct LineBuffer {
    log: Arc<PluginLog>,
    object: String,
    level: LogLevel,
    pending: Vec<u8>,
    tail: Option<StderrTail>,
    written: CallOutput,
}

impl GuestOutput {
    fn new(
        log: &Arc<PluginLog>,
        object: &str,
        level: LogLevel,
        tail: Option<StderrTail>,
        written: CallOutput,
    ) -> Self {
        Self {
            inner: Arc::new(Mutex::new(LineBuffer {
                log: log.clone(),
                object: object.to_string(),
                level,
                pending: Vec::new(),
                tail,
                written,
            })),
        }
    }

    fn write_bytes(&self, bytes: &[u8]) {
        let mut buffer = self.inner.lock().expect("guest output poisoned");
        buffer.written.add(bytes.len());
        if let Some(tail) = &buffer.tail {
            tail.push(&String::from_utf8_lossy(bytes));
        }
        buffer.pending.extend_from_slice(bytes);
        while let Some(end) = buffer.pending.iter().position(|byte| *byte == b'\n') {
            let line: Vec<u8> = buffer.pending.drain(..=end).collect();
            buffer.emit(&line);
        }
        // A guest that never writes a newline still cannot grow the buffer unbounded.
        if buffer.pending.len() > MAX_LINE_BYTES {
            let line = std::mem::take(&mut buffer.pending);
            buffer.emit(&line);
        }
    }

    fn flush_partial(&self) {
        let mut buffer = self.inner.lock().expect("guest output poisoned");
        if !buffer.pending.is_empty() {
            let line = std::mem::take(&mut buffer.pending);
            buffer.emit(&line);
        }
    }
}

impl LineBuffer {
    fn emit(&self, line: &[u8]) {
        self.log
            .line(self.level, &self.object, &String::from_utf8_lossy(line));
    }
}

impl Drop for LineBuffer {
    fn drop(&mut self) {
        if !self.pending.is_empty() {
            let line = std::mem::take(&mut self.pending);
            self.emit(&line);
        }
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.write_bytes(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        self.flush_partial();
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 << 10)
    }
}

impl tokio::io::AsyncWrite for GuestOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.write_bytes(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.flush_partial();
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_flush(cx)
    }
}
