//! COMPRESS=DEFLATE (RFC 4978): raw deflate in both directions; every flush of the session's
//! output ends with a sync flush so the client can decode each response completely.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const CHUNK: usize = 16 * 1024;

pub struct Deflate<T> {
    inner: T,
    compress: Compress,
    decompress: Decompress,
    /// Compressed bytes read from `inner`, not yet inflated (from `in_pos`).
    in_buf: Vec<u8>,
    in_pos: usize,
    /// Compressed bytes not yet written to `inner`.
    out_buf: Vec<u8>,
    inner_eof: bool,
}

impl<T> Deflate<T> {
    pub fn new(inner: T) -> Deflate<T> {
        Deflate {
            inner,
            compress: Compress::new(Compression::fast(), false),
            decompress: Decompress::new(false),
            in_buf: Vec::new(),
            in_pos: 0,
            out_buf: Vec::new(),
            inner_eof: false,
        }
    }
}

fn deflate_into(c: &mut Compress, input: &[u8], out: &mut Vec<u8>, flush: FlushCompress) -> io::Result<()> {
    let mut consumed = 0;
    loop {
        if out.capacity() - out.len() < 1024 {
            out.reserve(CHUNK);
        }
        let before_in = c.total_in();
        c.compress_vec(&input[consumed..], out, flush).map_err(io::Error::other)?;
        consumed += (c.total_in() - before_in) as usize;
        // Done when all input is taken; a flush is complete when it left room to spare.
        if consumed >= input.len() && (flush == FlushCompress::None || out.len() < out.capacity()) {
            return Ok(());
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> Deflate<T> {
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.out_buf.is_empty() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.out_buf))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.out_buf.drain(..n);
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for Deflate<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.in_pos < this.in_buf.len() {
                let out = buf.initialize_unfilled();
                let before_in = this.decompress.total_in();
                let before_out = this.decompress.total_out();
                let status = this
                    .decompress
                    .decompress(&this.in_buf[this.in_pos..], out, FlushDecompress::Sync)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                this.in_pos += (this.decompress.total_in() - before_in) as usize;
                let produced = (this.decompress.total_out() - before_out) as usize;
                if this.in_pos >= this.in_buf.len() {
                    this.in_buf.clear();
                    this.in_pos = 0;
                }
                if produced > 0 {
                    buf.advance(produced);
                    return Poll::Ready(Ok(()));
                }
                if status == Status::StreamEnd {
                    return Poll::Ready(Ok(()));
                }
                if this.in_pos < this.in_buf.len() && status == Status::BufError {
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, "bad deflate data")));
                }
            }
            if this.inner_eof {
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; 4096];
            let mut rb = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut rb))?;
            if rb.filled().is_empty() {
                this.inner_eof = true;
            } else {
                this.in_buf.extend_from_slice(rb.filled());
            }
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Deflate<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.out_buf.len() > 4 * CHUNK {
            ready!(this.poll_drain(cx))?;
        }
        deflate_into(&mut this.compress, data, &mut this.out_buf, FlushCompress::None)?;
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        deflate_into(&mut this.compress, &[], &mut this.out_buf, FlushCompress::Sync)?;
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.as_mut().poll_flush(cx))?;
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn round_trip_through_a_pipe() {
        let (a, b) = tokio::io::duplex(1 << 20);
        let mut left = Deflate::new(a);
        let mut right = Deflate::new(b);
        let text: Vec<u8> = (0..200_000u32).flat_map(|i| format!("line {i}\r\n").into_bytes()).collect();
        left.write_all(&text).await.unwrap();
        left.flush().await.unwrap();
        let mut got = vec![0u8; text.len()];
        right.read_exact(&mut got).await.unwrap();
        assert_eq!(got, text);
        // Small messages after a flush are readable at once (sync flush).
        right.write_all(b"* OK hello\r\n").await.unwrap();
        right.flush().await.unwrap();
        let mut small = [0u8; 12];
        left.read_exact(&mut small).await.unwrap();
        assert_eq!(&small, b"* OK hello\r\n");
    }
}
