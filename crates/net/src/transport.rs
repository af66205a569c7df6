//! The swarm's transport: TCP without Nagle's delay, then noise and yamux, as libp2p's own
//! TCP setup, with two additions.
//!
//! * Each socket bounds how long data it sent may stay unacknowledged ([`UNACKED_TIMEOUT`],
//!   Linux's `TCP_USER_TIMEOUT`). A connection across a partition, or to a host that vanished,
//!   then fails with an error soon after its traffic stops being acknowledged (pings keep
//!   traffic flowing, so that is within seconds). Without the bound it lingers: the close
//!   that a failed ping starts is graceful and waits for the dead link, TCP retransmits with
//!   a growing backoff for many minutes, and the peer is not redialled while the old
//!   connection counts as open, so finality after a healed split waited for TCP's next
//!   retransmission, seconds after the heal.
//! * With a [`Latency`], received bytes go through the latency injector (benchmarks only).

use std::error::Error;
use std::time::Duration;

use libp2p::core::{muxing::StreamMuxerBox, transport::Boxed, upgrade::Version};
use libp2p::{identity::Keypair, noise, tcp, yamux, PeerId, Transport};

use crate::latency::{Delayed, Latency, MAX_DELAYED_BYTES};

/// Longest time sent data may stay unacknowledged before the kernel fails the connection:
/// well above any round trip and above the ping timeout, so a slow link or a busy peer is
/// given up by the failed ping first, and this only ends connections that are dead.
pub(crate) const UNACKED_TIMEOUT: Duration = Duration::from_secs(5);

/// TCP, noise and yamux, with received bytes delayed when `latency` is set.
pub(crate) fn tcp_noise_yamux(
    keypair: &Keypair,
    latency: Option<Latency>,
) -> Result<Boxed<(PeerId, StreamMuxerBox)>, Box<dyn Error + Send + Sync>> {
    let noise = noise::Config::new(keypair)?;
    let tcp = tcp::tokio::Transport::new(tcp::Config::default().nodelay(true))
        .map(|stream, _| bound_unacked(stream));
    Ok(match latency {
        None => tcp
            .upgrade(Version::V1Lazy)
            .authenticate(noise)
            .multiplex(yamux::Config::default())
            .boxed(),
        Some(latency) => tcp
            .map(move |stream, _| Delayed::new(stream, latency, MAX_DELAYED_BYTES))
            .upgrade(Version::V1Lazy)
            .authenticate(noise)
            .multiplex(yamux::Config::default())
            .boxed(),
    })
}

/// Sets [`UNACKED_TIMEOUT`] on `stream`'s socket where the system has the option; a socket
/// that refuses it keeps the system's default and still works.
fn bound_unacked(stream: tcp::tokio::TcpStream) -> tcp::tokio::TcpStream {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Err(error) =
        socket2::SockRef::from(&stream.0).set_tcp_user_timeout(Some(UNACKED_TIMEOUT))
    {
        tracing::debug!(%error, "cannot bound unacknowledged data on a connection");
    }
    stream
}

#[cfg(all(test, any(target_os = "linux", target_os = "android")))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sockets_get_the_unacknowledged_data_bound() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let stream = bound_unacked(tcp::tokio::TcpStream(stream));
        let set = socket2::SockRef::from(&stream.0)
            .tcp_user_timeout()
            .unwrap();
        assert_eq!(set, Some(UNACKED_TIMEOUT));
    }
}
