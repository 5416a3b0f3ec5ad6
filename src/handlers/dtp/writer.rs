//! Pipelined uploads: once a binary upload that cannot be spliced (splice.rs: TLS, or a
//! sink that is no plain file) is past [`PIPELINE_AFTER`] bytes, its file writes move to a
//! helper thread, so receiving from the network (the session thread: decryption, for TLS)
//! and writing the file (the helper) run on two cores at once. A single large upload is
//! bound by one core doing both otherwise; small uploads never start a helper. Buffers go
//! round between the two threads through two crossbeam channels, so nothing is allocated
//! per chunk. The helper hands the upload back when it has written everything, so the
//! session decides whether to commit it or abandon it.

use std::io;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};

use crate::filesystems::{PlainUpload, UploadSink};

/// Bytes an upload writes itself before handing its writes to a helper thread.
pub(crate) const PIPELINE_AFTER: u64 = 8 << 20;

/// Buffers in circulation per pipelined upload (one being filled, the rest queued or being
/// written).
const BUFFERS: usize = 4;

/// Stack of the helper thread: it only copies buffers into the sink.
const STACK: usize = 64 * 1024;

/// The session side of a pipelined upload.
pub(crate) struct FileWriter {
    full: Option<Sender<(Vec<u8>, usize)>>,
    empty: Receiver<Vec<u8>>,
    spare: usize,
    buf_size: usize,
    thread: Option<JoinHandle<io::Result<Box<dyn UploadSink>>>>,
}

impl FileWriter {
    /// Moves `sink` to a new helper thread that writes what [`FileWriter::send`] queues.
    ///
    /// # Errors
    /// The thread could not be started: the sink comes back with the error.
    pub(crate) fn start(
        sink: Box<dyn UploadSink>,
        buf_size: usize,
    ) -> Result<FileWriter, (Box<dyn UploadSink>, io::Error)> {
        let (full_tx, full_rx) = crossbeam_channel::bounded::<(Vec<u8>, usize)>(BUFFERS);
        let (empty_tx, empty_rx) = crossbeam_channel::bounded::<Vec<u8>>(BUFFERS);
        // The sink waits in this slot until the thread runs, so a failed spawn can give it
        // back.
        let slot = std::sync::Arc::new(std::sync::Mutex::new(Some(sink)));
        let theirs = slot.clone();
        let spawned = std::thread::Builder::new()
            .name("ftp-writer".into())
            .stack_size(STACK)
            .spawn(move || {
                let Some(mut sink) = theirs.lock().ok().and_then(|mut s| s.take()) else {
                    return Err(io::Error::other("upload sink unavailable"));
                };
                drop(theirs);
                for (buf, n) in full_rx {
                    // On an error the channels close: the session sees it at its next send,
                    // and the upload is abandoned here.
                    sink.write_all(&buf[..n])?;
                    let _ = empty_tx.send(buf);
                }
                sink.flush()?;
                Ok(sink)
            });
        let thread = match spawned {
            Ok(t) => t,
            Err(e) => {
                let back = slot.lock().ok().and_then(|mut s| s.take());
                return match back {
                    Some(sink) => Err((sink, e)),
                    None => Err((Box::new(PlainUpload(io::sink())), e)),
                };
            }
        };
        Ok(FileWriter {
            full: Some(full_tx),
            empty: empty_rx,
            spare: BUFFERS - 1,
            buf_size,
            thread: Some(thread),
        })
    }

    /// Queues `buf[..n]` for writing and returns an empty buffer to fill next (waiting
    /// while every buffer is queued); `None` when writing failed (see [`finish`]).
    ///
    /// [`finish`]: FileWriter::finish
    pub(crate) fn send(&mut self, buf: Vec<u8>, n: usize) -> Option<Vec<u8>> {
        self.full.as_ref()?.send((buf, n)).ok()?;
        if self.spare > 0 {
            self.spare -= 1;
            return Some(vec![0u8; self.buf_size]);
        }
        self.empty.recv().ok()
    }

    /// Waits until everything queued is written and flushed, and gives the upload back.
    ///
    /// # Errors
    /// The first write error, or the flush's (the upload is then abandoned).
    pub(crate) fn finish(mut self) -> io::Result<Box<dyn UploadSink>> {
        self.join()
    }

    fn join(&mut self) -> io::Result<Box<dyn UploadSink>> {
        self.full = None;
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(io::Error::other("the upload's writer thread panicked")),
            None => Err(io::Error::other("the upload's writer already finished")),
        }
    }
}

impl Drop for FileWriter {
    /// An upload given up without `finish` still waits for its writes, then is abandoned.
    fn drop(&mut self) {
        if self.thread.is_some() {
            let _ = self.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    /// A sink that records what it gets and can be told to fail after some bytes.
    struct Rec {
        got: Arc<Mutex<Vec<u8>>>,
        fail_after: usize,
    }

    impl Write for Rec {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            let mut g = self.got.lock().unwrap();
            if g.len() + b.len() > self.fail_after {
                return Err(io::Error::other("disk full"));
            }
            g.extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn writes_every_chunk_in_order() {
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = Rec {
            got: got.clone(),
            fail_after: usize::MAX,
        };
        let Ok(mut w) = FileWriter::start(Box::new(PlainUpload(sink)), 16) else {
            panic!("no writer thread")
        };
        let mut want = Vec::new();
        let mut buf = vec![0u8; 16];
        for i in 0..100u8 {
            let n = usize::from(i % 16) + 1;
            buf[..n].fill(i);
            want.resize(want.len() + n, i);
            buf = w.send(buf, n).unwrap();
            assert_eq!(buf.len(), 16);
        }
        w.finish().unwrap().commit().unwrap();
        assert_eq!(*got.lock().unwrap(), want);
    }

    #[test]
    fn a_write_error_reaches_the_session() {
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = Rec {
            got: got.clone(),
            fail_after: 40,
        };
        let Ok(mut w) = FileWriter::start(Box::new(PlainUpload(sink)), 16) else {
            panic!("no writer thread")
        };
        let mut buf = vec![7u8; 16];
        let mut refused = false;
        for _ in 0..100 {
            match w.send(buf, 16) {
                Some(b) => buf = b,
                None => {
                    refused = true;
                    break;
                }
            }
        }
        assert!(refused, "sends go on after the sink failed");
        let Err(e) = w.finish() else {
            panic!("the error was lost")
        };
        assert_eq!(e.to_string(), "disk full");
        assert_eq!(got.lock().unwrap().len(), 32);
    }
}
