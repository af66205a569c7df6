//! The sync protocol's wire format: one length-prefixed frame per request and per response.
//!
//! A 4-byte big-endian length precedes the payload so that an oversize frame is refused from its
//! header, before a single payload byte is buffered.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::{request_response, StreamProtocol};

/// Largest sync request; requests name a height range, they never carry bulk data.
pub(crate) const MAX_SYNC_REQUEST_BYTES: usize = 64 * 1024;

/// Codec for `/timecoin/<chain_id>/sync/1`: opaque bytes in, opaque bytes out.
#[derive(Clone, Debug)]
pub(crate) struct SyncCodec {
    max_response_bytes: usize,
}

impl SyncCodec {
    pub(crate) fn new(max_response_bytes: usize) -> Self {
        Self { max_response_bytes }
    }
}

async fn read_frame<T>(io: &mut T, limit: usize) -> io::Result<Vec<u8>>
where
    T: AsyncRead + Unpin + Send,
{
    let mut header = [0u8; 4];
    io.read_exact(&mut header).await?;
    let len = u32::from_be_bytes(header) as usize;
    if len > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds the limit of {limit} bytes"),
        ));
    }
    let mut payload = vec![0u8; len];
    io.read_exact(&mut payload).await?;
    Ok(payload)
}

async fn write_frame<T>(io: &mut T, payload: &[u8], limit: usize) -> io::Result<()>
where
    T: AsyncWrite + Unpin + Send,
{
    // Refusing here too keeps a node from sending what a peer with the same limits would refuse.
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|len| *len as usize <= limit)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "frame of {} bytes exceeds the limit of {limit} bytes",
                    payload.len()
                ),
            )
        })?;
    io.write_all(&len.to_be_bytes()).await?;
    io.write_all(payload).await?;
    io.flush().await
}

impl request_response::Codec for SyncCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io, MAX_SYNC_REQUEST_BYTES).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io, self.max_response_bytes).await
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        request: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &request, MAX_SYNC_REQUEST_BYTES).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        response: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &response, self.max_response_bytes).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_limits_hold() {
        let mut wire = Vec::new();
        write_frame(&mut wire, b"hello", 16).await.unwrap();
        assert_eq!(&wire[..4], &5u32.to_be_bytes());
        let mut reader = futures::io::Cursor::new(wire.clone());
        assert_eq!(read_frame(&mut reader, 16).await.unwrap(), b"hello");

        // The reader refuses from the header alone.
        let mut reader = futures::io::Cursor::new(wire);
        let err = read_frame(&mut reader, 4).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);

        let mut sink = Vec::new();
        let err = write_frame(&mut sink, &[0u8; 17], 16).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(sink.is_empty());
    }
}
