//! A TCP stream that knows when its data arrived.
//!
//! A client that timestamps a chunk when its task gets around to reading it measures its own
//! scheduling as much as the server: with a thousand streams on a busy machine, a chunk can wait
//! tens of milliseconds in the socket before its task runs. Linux timestamps every packet as it
//! arrives (`SO_TIMESTAMPNS`), and `recvmsg` hands that time over with the data. [`Stamped`]
//! reads that way and keeps the arrival time of the last data read, which the exchange uses as
//! the chunk's time: what the server delivered, however late the client looked.
//!
//! Elsewhere (other systems, or a kernel that refuses the option) it reads plainly and reports
//! no arrival time; the exchange then falls back to the time it read the chunk.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use hyper::rt::{Read, ReadBufCursor, Write};
use tokio::io::{AsyncWrite, Interest};
use tokio::net::TcpStream;

/// The stream, and the arrival time of the last data read from it (ns since the Unix epoch,
/// `CLOCK_REALTIME`, as the kernel stamps packets; 0 until known).
pub(crate) struct Stamped {
    io: TcpStream,
    stamping: bool,
    arrived_ns: Arc<AtomicU64>,
}

impl Stamped {
    /// Wrap `io`; with `stamp`, ask the kernel to timestamp what it receives.
    pub fn new(io: TcpStream, stamp: bool) -> Stamped {
        let stamping = stamp && enable(&io);
        Stamped {
            io,
            stamping,
            arrived_ns: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Where the arrival time of the last read is kept.
    pub fn arrivals(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.arrived_ns)
    }
}

#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
mod sys {
    use std::io;
    use std::mem::MaybeUninit;
    use std::os::fd::AsRawFd;

    /// `SO_TIMESTAMPNS` (and `SCM_TIMESTAMPNS`) in the generic Linux ABI.
    const SO_TIMESTAMPNS: libc::c_int = 35;

    pub fn enable(fd: &impl AsRawFd) -> bool {
        let on: libc::c_int = 1;
        // SAFETY: a valid socket descriptor and a pointer to an int of the size passed.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                SO_TIMESTAMPNS,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            ) == 0
        }
    }

    /// Room for one `SCM_TIMESTAMPNS` message (a timespec) with its header, 8-byte aligned.
    #[repr(C, align(8))]
    struct Control([u8; 64]);

    /// `recvmsg` into `buf`: bytes read, and the arrival time (ns, realtime) if the kernel gave
    /// one.
    pub fn recv(
        fd: &impl AsRawFd,
        buf: &mut [MaybeUninit<u8>],
    ) -> io::Result<(usize, Option<u64>)> {
        let mut control = Control([0; 64]);
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: msghdr is plain data; all-zero is a valid empty header.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.0.as_mut_ptr().cast();
        msg.msg_controllen = control.0.len() as _;
        // SAFETY: `msg` points at a live iovec over `buf` (writable, `buf.len()` bytes; the
        // kernel writes initialized bytes into it) and at `control`, both outliving the call.
        let n = unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut arrived = None;
        // SAFETY: the CMSG macros walk the control buffer the kernel filled, within
        // `msg_controllen`; the data of an SCM_TIMESTAMPNS message is one timespec, read
        // unaligned.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == SO_TIMESTAMPNS {
                    let ts: libc::timespec =
                        std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::timespec>());
                    if ts.tv_sec > 0 {
                        arrived = Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64);
                    }
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
        }
        Ok((n as usize, arrived))
    }
}

#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
fn enable(io: &TcpStream) -> bool {
    sys::enable(io)
}

#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
fn enable(_io: &TcpStream) -> bool {
    false
}

impl Read for Stamped {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.stamping {
            return plain_read(&this.io, cx, buf);
        }
        #[cfg(all(
            target_os = "linux",
            any(target_arch = "x86_64", target_arch = "aarch64")
        ))]
        loop {
            ready!(this.io.poll_read_ready(cx))?;
            // SAFETY: `recv` only writes initialized bytes into the slice, and `advance` below
            // covers exactly the bytes it reported.
            let dst = unsafe { buf.as_mut() };
            match this
                .io
                .try_io(Interest::READABLE, || sys::recv(&this.io, dst))
            {
                Ok((n, arrived)) => {
                    // Data without a stamp (the kernel turns stamping on lazily, and may not
                    // have yet) clears the last one rather than inherit it.
                    if n > 0 {
                        this.arrived_ns
                            .store(arrived.unwrap_or(0), Ordering::Relaxed);
                    }
                    // SAFETY: the kernel filled the first `n` bytes.
                    unsafe { buf.advance(n) };
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        #[cfg(not(all(
            target_os = "linux",
            any(target_arch = "x86_64", target_arch = "aarch64")
        )))]
        plain_read(&this.io, cx, buf)
    }
}

/// A read without timestamps.
fn plain_read(
    io: &TcpStream,
    cx: &mut Context<'_>,
    mut buf: ReadBufCursor<'_>,
) -> Poll<io::Result<()>> {
    loop {
        ready!(io.poll_read_ready(cx))?;
        // SAFETY: `try_read` writes initialized bytes only; `advance` covers what it read.
        let dst = unsafe { buf.as_mut() };
        // SAFETY: viewing the uninitialized tail as bytes to be overwritten by `read`, which
        // never reads them.
        let dst = unsafe { &mut *(dst as *mut [std::mem::MaybeUninit<u8>] as *mut [u8]) };
        match io.try_read(dst) {
            Ok(n) => {
                // SAFETY: `try_read` filled `n` bytes.
                unsafe { buf.advance(n) };
                return Poll::Ready(Ok(()));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Poll::Ready(Err(e)),
        }
    }
}

impl Write for Stamped {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};
    use tokio::io::AsyncWriteExt;

    fn unix_ns() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    }

    /// Data that waited in the socket is stamped with its arrival, not with the read.
    #[tokio::test]
    async fn stamps_data_with_its_arrival() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, server) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let mut stream = Stamped::new(client.unwrap(), true);
        if !stream.stamping {
            eprintln!("the kernel does not stamp received data here: nothing to check");
            return;
        }
        let arrivals = stream.arrivals();
        let (mut server, _) = server.unwrap();
        // Linux turns receive stamping on for the whole system when a first socket asks, not
        // always in time for the next packet: a few rounds allow for that.
        for round in 0..10 {
            server.write_all(b"token").await.unwrap();
            server.flush().await.unwrap();
            // The data is in the client's socket (loopback delivers during the write); it waits.
            let written = unix_ns();
            tokio::time::sleep(Duration::from_millis(200)).await;

            let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 64];
            let mut read_buf = hyper::rt::ReadBuf::uninit(&mut buf);
            std::future::poll_fn(|cx| Pin::new(&mut stream).poll_read(cx, read_buf.unfilled()))
                .await
                .unwrap();
            let read_at = unix_ns();
            assert_eq!(read_buf.filled(), b"token");
            let arrived = arrivals.load(Ordering::Relaxed);
            if arrived == 0 {
                eprintln!("round {round}: not stamped yet");
                continue;
            }
            assert!(
                arrived <= written,
                "stamped {} ns after the write",
                arrived - written
            );
            assert!(
                read_at - arrived >= 200_000_000,
                "the stamp is only {} ms before the read",
                (read_at - arrived) / 1_000_000
            );
            return;
        }
        panic!("no data was stamped in 10 rounds");
    }
}
