//! The stream every connection's HTTP runs on. It holds the connection's
//! slot, and enforces two timeouts that HTTP alone does not:
//!
//! - **idle**: no byte read or written for `idle_timeout` (to one and a
//!   half times that, see `SILENT_PERIODS`) closes the connection. This
//!   covers a client that connects and never sends a
//!   byte (the HTTP/1-or-2 detection waits without a timeout), idle
//!   keep-alive connections, and idle HTTP/2 connections;
//! - **send**: a response that cannot write for `send_timeout` (the client
//!   stopped reading) closes the connection, so a reader that never reads
//!   does not hold a slot and a blob file forever.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Sleep;

/// A connection's stream with its slot and its idle and send timeouts.
pub struct GuardedIo<IO> {
    io: IO,
    _permit: OwnedSemaphorePermit,
    send_timeout: Duration,
    idle_timeout: Duration,
    /// Bytes moved (either way) since the idle timer last fired.
    moved: bool,
    /// Idle timer periods in a row without a byte moved.
    silent_periods: u8,
    write_stall: Option<Pin<Box<Sleep>>>,
    idle: Option<Pin<Box<Sleep>>>,
    /// The waker the pending idle timer holds: while the timer has not
    /// fired, polling it again with the same waker would only register
    /// that waker again (a few hundred instructions per request).
    idle_waker: Option<Waker>,
}

/// The idle timer ticks every half `idle_timeout` and the connection is
/// idle after two silent ticks in a row: it closes between one and one and
/// a half `idle_timeout` after its last byte. Why not a deadline moved on
/// every read and write: that is a clock read and a timer-wheel update per
/// request, a few per cent of a small request's cost; a flag is free.
const SILENT_PERIODS: u8 = 2;

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
            moved: false,
            silent_periods: 0,
            write_stall: None,
            idle: None,
            idle_waker: None,
        }
    }

    fn active(&mut self) {
        self.moved = true;
    }

    fn idle_period(&self) -> Duration {
        self.idle_timeout / u32::from(SILENT_PERIODS)
    }

    /// Polls the idle timer (started on the first read that has to wait);
    /// `Ready` once the connection has been silent long enough.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let period = self.idle_period();
        loop {
            let timer = self
                .idle
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(period)));
            // Not fired (`is_elapsed` is also true for a timer not yet
            // registered, which is then polled) and holding this waker.
            let waker = cx.waker();
            let holds_waker = self.idle_waker.as_ref().is_some_and(|w| w.will_wake(waker));
            if !timer.is_elapsed() && holds_waker {
                return Poll::Pending;
            }
            if timer.as_mut().poll(cx).is_pending() {
                if !holds_waker {
                    self.idle_waker = Some(cx.waker().clone());
                }
                return Poll::Pending;
            }
            self.idle_waker = None;
            if std::mem::take(&mut self.moved) {
                self.silent_periods = 0;
            } else {
                self.silent_periods += 1;
                if self.silent_periods >= SILENT_PERIODS {
                    return Poll::Ready(());
                }
            }
            // From now, not from the last deadline: a timer that was not
            // polled for a while (reads not waiting during a long response)
            // must not count the missed ticks as silent ones.
            timer.as_mut().reset(tokio::time::Instant::now() + period);
        }
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
            Poll::Pending => match self.poll_idle(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(()) => {
                    let idle = self.idle_timeout;
                    Poll::Ready(Err(timed_out(format!("connection idle for {idle:?}"))))
                }
            },
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
