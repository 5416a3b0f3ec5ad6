//! Uploads moved by splice(2): socket → pipe → file, so the bytes never pass through the
//! process. A read(2) + write(2) upload copies every byte twice (socket to buffer, buffer to
//! page cache); splicing the socket into a pipe hands the pipe the socket buffer's pages,
//! and splicing the pipe into the file makes the one copy into the page cache. It also needs
//! no receive buffer per upload (a quarter MiB each otherwise, per running upload).
//!
//! Used for binary uploads over plain TCP into a regular file (the sink's
//! [`UploadSink::file`](crate::filesystems::UploadSink::file)); ASCII conversion, TLS and
//! other sinks go through a buffer. The pipe is emptied into the file before each call
//! returns, so no received byte is ever left in it, whatever ends the upload.

use std::fs::File;
use std::io;
use std::net::TcpStream;
use std::os::fd::OwnedFd;

use nix::errno::Errno;
use nix::fcntl::{fcntl, splice, FcntlArg, OFlag, SpliceFFlags};

/// Pipe capacity asked for: four reads' worth of a default socket receive buffer. The
/// kernel may give less (a user past `pipe-user-pages-soft` gets small pipes): the pipe's
/// real capacity is used.
const PIPE_SIZE: i32 = 256 * 1024;

/// What one [`SplicePipe::receive`] did.
#[derive(Debug)]
pub(crate) enum Received {
    /// This many bytes are now in the file.
    Bytes(usize),
    /// Nothing was waiting on the socket.
    WouldBlock,
    /// The client closed its side: the upload is complete.
    Eof,
    /// The client reset the connection.
    PeerClosed,
    /// Writing the file failed (ENOSPC, EDQUOT, EIO...).
    Local(io::Error),
    /// The file does not take spliced writes: these bytes, read back from the pipe, still
    /// have to be written the ordinary way, and the upload goes on without splice(2).
    Unsupported(Vec<u8>),
}

/// The pipe of a spliced upload.
#[derive(Debug)]
pub(crate) struct SplicePipe {
    r: OwnedFd,
    w: OwnedFd,
    cap: usize,
}

impl SplicePipe {
    /// A pipe for an upload into `file`, or `None` when splice(2) cannot write it: the file
    /// is in append mode (splice(2) refuses O_APPEND), or no pipe could be made.
    pub(crate) fn for_file(file: &File) -> Option<SplicePipe> {
        let flags = OFlag::from_bits_truncate(fcntl(file, FcntlArg::F_GETFL).ok()?);
        if flags.contains(OFlag::O_APPEND) {
            return None;
        }
        let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).ok()?;
        let cap = match fcntl(&w, FcntlArg::F_SETPIPE_SZ(PIPE_SIZE)) {
            Ok(n) => n,
            Err(_) => fcntl(&w, FcntlArg::F_GETPIPE_SZ).ok()?,
        };
        Some(SplicePipe {
            r,
            w,
            cap: usize::try_from(cap).ok().filter(|&c| c > 0)?,
        })
    }

    /// The most one [`receive`](Self::receive) moves.
    pub(crate) fn capacity(&self) -> usize {
        self.cap
    }

    /// Moves what is waiting on the non-blocking `sock`, at most `max` bytes, into `file`
    /// at its position.
    pub(crate) fn receive(&mut self, sock: &TcpStream, file: &File, max: usize) -> Received {
        let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
        let n = match splice(sock, None, &self.w, None, max.min(self.cap), flags) {
            Ok(0) => return Received::Eof,
            Ok(n) => n,
            Err(Errno::EAGAIN) | Err(Errno::EINTR) => return Received::WouldBlock,
            Err(Errno::ECONNRESET) | Err(Errno::EPIPE) | Err(Errno::ENOTCONN) => {
                return Received::PeerClosed
            }
            Err(e) => return Received::Local(e.into()),
        };
        let mut left = n;
        while left > 0 {
            match splice(&self.r, None, file, None, left, SpliceFFlags::SPLICE_F_MOVE) {
                Ok(0) => return Received::Local(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(m) => left -= m,
                Err(Errno::EINTR) => {}
                Err(Errno::EINVAL) | Err(Errno::ENOSYS) | Err(Errno::EOPNOTSUPP) if left == n => {
                    return self.take_back(n);
                }
                Err(e) => return Received::Local(e.into()),
            }
        }
        Received::Bytes(n)
    }

    /// The `n` bytes the file refused, read back out of the pipe.
    fn take_back(&mut self, n: usize) -> Received {
        let mut back = vec![0u8; n];
        let mut got = 0;
        while got < n {
            match nix::unistd::read(&self.r, &mut back[got..]) {
                Ok(0) => break,
                Ok(m) => got += m,
                Err(Errno::EINTR) => {}
                Err(e) => return Received::Local(e.into()),
            }
        }
        back.truncate(got);
        Received::Unsupported(back)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, SeekFrom, Write};
    use std::net::TcpListener;

    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        b.set_nonblocking(true).unwrap();
        (a, b)
    }

    #[test]
    fn moves_every_byte_into_the_file_at_its_position() {
        let (mut client, server) = pair();
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(b"keep").unwrap();
        let mut p = SplicePipe::for_file(&file).expect("a pipe");
        assert!(matches!(
            p.receive(&server, &file, 1 << 20),
            Received::WouldBlock
        ));
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let writer = std::thread::spawn(move || {
            client.write_all(&data).unwrap();
            data
        });
        let mut total = 0;
        loop {
            match p.receive(&server, &file, 1 << 20) {
                Received::Bytes(n) => total += n,
                Received::WouldBlock => std::thread::sleep(std::time::Duration::from_millis(1)),
                Received::Eof => break,
                other => panic!("{other:?}"),
            }
        }
        let data = writer.join().unwrap();
        assert_eq!(total, data.len());
        let mut got = Vec::new();
        file.seek(SeekFrom::Start(0)).unwrap();
        file.read_to_end(&mut got).unwrap();
        assert_eq!(&got[..4], b"keep");
        assert_eq!(&got[4..], &data[..]);
    }

    #[test]
    fn no_pipe_for_a_file_in_append_mode() {
        let d = tempfile::tempdir().unwrap();
        let f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(d.path().join("f"))
            .unwrap();
        assert!(SplicePipe::for_file(&f).is_none());
    }
}
