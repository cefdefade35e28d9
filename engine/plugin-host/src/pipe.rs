//! A bounded stdout/stderr for plugins. wasmtime-wasi's `MemoryOutputPipe`
//! traps when full, which would kill a plugin for being chatty; this one
//! keeps the first `capacity` bytes, counts the rest and always reports
//! success, so output is bounded without changing the plugin's behaviour.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

/// Contents of a pipe.
#[derive(Debug, Default)]
pub(crate) struct PipeBuf {
    pub data: Vec<u8>,
    pub capacity: usize,
    pub dropped: usize,
}

/// Cheaply cloneable handle; all clones share the buffer.
#[derive(Clone, Debug)]
pub(crate) struct BoundedPipe(Arc<Mutex<PipeBuf>>);

impl BoundedPipe {
    pub fn new(capacity: usize) -> Self {
        BoundedPipe(Arc::new(Mutex::new(PipeBuf {
            data: Vec::new(),
            capacity,
            dropped: 0,
        })))
    }

    fn push(&self, bytes: &[u8]) {
        let mut buf = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let room = buf.capacity.saturating_sub(buf.data.len());
        let take = room.min(bytes.len());
        buf.data.extend_from_slice(&bytes[..take]);
        buf.dropped += bytes.len() - take;
    }

    /// The kept text (lossy UTF-8) and the number of dropped bytes.
    pub fn contents(&self) -> (String, usize) {
        let buf = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        (String::from_utf8_lossy(&buf.data).into_owned(), buf.dropped)
    }
}

impl IsTerminal for BoundedPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for BoundedPipe {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

impl OutputStream for BoundedPipe {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 << 10)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for BoundedPipe {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for BoundedPipe {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_prefix_and_counts_the_rest() {
        let mut p = BoundedPipe::new(4);
        p.write(Bytes::from_static(b"abcdef")).ok();
        p.write(Bytes::from_static(b"gh")).ok();
        assert_eq!(p.contents(), ("abcd".to_string(), 4));
    }
}
