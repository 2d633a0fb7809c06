//! The stream every connection's HTTP runs on. It holds the connection's
//! slot, and enforces two timeouts that HTTP alone does not:
//!
//! - **idle**: no byte read or written for `idle_timeout` closes the
//!   connection. This covers a client that connects and never sends a
//!   byte (the HTTP/1-or-2 detection waits without a timeout), idle
//!   keep-alive connections, and idle HTTP/2 connections;
//! - **send**: a response that cannot write for `send_timeout` (the client
//!   stopped reading) closes the connection, so a reader that never reads
//!   does not hold a slot and a blob file forever.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, Sleep};

/// A connection's stream with its slot and its idle and send timeouts.
pub struct GuardedIo<IO> {
    io: IO,
    _permit: OwnedSemaphorePermit,
    send_timeout: Duration,
    idle_timeout: Duration,
    last_activity: Instant,
    write_stall: Option<Pin<Box<Sleep>>>,
    idle: Option<Pin<Box<Sleep>>>,
}

fn timed_out(what: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, what)
}

impl<IO> GuardedIo<IO> {
    /// Wraps `io`, holding `permit` until dropped.
    pub fn new(
        io: IO,
        permit: OwnedSemaphorePermit,
        send_timeout: Duration,
        idle_timeout: Duration,
    ) -> Self {
        GuardedIo {
            io,
            _permit: permit,
            send_timeout,
            idle_timeout,
            last_activity: Instant::now(),
            write_stall: None,
            idle: None,
        }
    }

    fn active(&mut self) {
        self.last_activity = Instant::now();
    }

    /// A pending write starts the stall timer; it fails the write once it
    /// expires. Progress clears it.
    fn watch_write<T>(
        &mut self,
        cx: &mut Context<'_>,
        r: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        match r {
            Poll::Ready(v) => {
                self.write_stall = None;
                self.active();
                Poll::Ready(v)
            }
            Poll::Pending => {
                let timeout = self.send_timeout;
                let timer = self
                    .write_stall
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(timed_out(format!(
                        "client took no data for {timeout:?}"
                    )))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for GuardedIo<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.io).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    self.active();
                }
                Poll::Ready(r)
            }
            Poll::Pending => {
                // Idle unless bytes moved (either way) within the timeout.
                loop {
                    let deadline = self.last_activity + self.idle_timeout;
                    let timer = self
                        .idle
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                    if timer.deadline() != deadline {
                        timer.as_mut().reset(deadline);
                    }
                    match timer.as_mut().poll(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(())
                            if Instant::now() >= self.last_activity + self.idle_timeout =>
                        {
                            let idle = self.idle_timeout;
                            return Poll::Ready(Err(timed_out(format!(
                                "connection idle for {idle:?}"
                            ))));
                        }
                        Poll::Ready(()) => continue,
                    }
                }
            }
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for GuardedIo<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        self.watch_write(cx, r)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.io).poll_flush(cx);
        self.watch_write(cx, r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.watch_write(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}
