//! Bridges between hyper bodies and the blocking readers/writers of the storage, image and
//! backup libraries: uploads stream to disk or into a [`ChannelReader`]; exports write into a
//! [`ChannelWriter`] whose chunks become the response body, so nothing is staged on disk.

use std::io::{self, Read, Write};
use std::path::Path;

use bytes::Bytes;
use futures_util::StreamExt as _;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use super::response::Body;
use crate::error::{Error, Result};

/// Streams a request body into `path`, hashing it; returns the bytes written.
pub async fn body_to_file(mut body: Incoming, path: &Path, hasher: &mut Sha256) -> Result<u64> {
    let mut f = tokio::fs::File::create(path)
        .await
        .map_err(|e| Error::internal(format!("creating {}: {e}", path.display())))?;
    let mut n = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Error::bad(format!("Failed to read request body: {e}")))?;
        let Ok(data) = frame.into_data() else { continue };
        hasher.update(&data);
        n += data.len() as u64;
        f.write_all(&data).await.map_err(|e| Error::internal(format!("writing {}: {e}", path.display())))?;
    }
    f.sync_all().await.map_err(|e| Error::internal(format!("syncing {}: {e}", path.display())))?;
    Ok(n)
}

/// A blocking reader over chunks sent by [`feed`].
pub struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    cur: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        self.cur = self.cur.slice(n..);
        Ok(n)
    }
}

/// A channel pair: feed the sender with [`feed`], read the other end in a blocking task.
pub fn channel_reader() -> (mpsc::Sender<io::Result<Bytes>>, ChannelReader) {
    let (tx, rx) = mpsc::channel(16);
    (tx, ChannelReader { rx, cur: Bytes::new() })
}

/// Sends every data frame of `body` into `tx` (stops quietly when the reader is gone).
pub async fn feed(mut body: Incoming, tx: mpsc::Sender<io::Result<Bytes>>) {
    while let Some(frame) = body.frame().await {
        let item = match frame {
            Ok(f) => match f.into_data() {
                Ok(d) => Ok(d),
                Err(_) => continue,
            },
            Err(e) => Err(io::Error::other(e.to_string())),
        };
        let stop = item.is_err();
        if tx.send(item).await.is_err() || stop {
            return;
        }
    }
}

/// A blocking writer whose chunks become a streamed response body.
pub struct ChannelWriter {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buf: Vec<u8>,
}

const CHUNK: usize = 1 << 20;

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.buf));
        self.tx.blocking_send(Ok(chunk)).map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "client went away"))
    }
}

impl ChannelWriter {
    /// Fails the body (the client sees a truncated transfer rather than a valid tarball).
    pub fn fail(&self, e: io::Error) {
        let _ = self.tx.blocking_send(Err(e));
    }
}

/// A writer for a blocking producer, and the response body it fills.
pub fn channel_writer() -> (ChannelWriter, Body) {
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(4);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) })
        .map(|item| item.map(Frame::data));
    (ChannelWriter { tx, buf: Vec::with_capacity(CHUNK) }, BodyExt::boxed(StreamBody::new(stream)))
}
