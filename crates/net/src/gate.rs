//! Who may hold an established connection.
//!
//! `connection_limits` bounds totals, but it cannot tell a stranger from a peer the operator
//! named, nor one host opening a hundred connections under fresh peer ids from a hundred hosts.
//! This gate admits a connection of a *reserved* peer (a bootstrap peer named by id, or one the
//! node listed, e.g. a persistent peer or a validator) always, and any other connection only
//! while
//!
//! * all connections stay below `max_peers` (reserved ones count too, so the bound holds while
//!   reserved peers come and go),
//! * inbound connections of non-reserved peers stay below `max_inbound`, so that peers dialling
//!   in cannot take the slots the node needs to dial out, and
//! * inbound connections of non-reserved peers from one IP address stay below `max_per_ip`.
//!
//! The checks run after the handshake, when the peer id is known, so that reserved peers behind
//! one address (a local testnet, a NAT) are never refused; floods of unfinished handshakes are
//! bounded by `connection_limits`' pending limits instead.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::net::IpAddr;
use std::task::{Context, Poll};

use libp2p::{
    core::{transport::PortUse, Endpoint},
    multiaddr::Protocol,
    swarm::{
        dummy, ConnectionClosed, ConnectionDenied, ConnectionId, FromSwarm, ListenFailure,
        NetworkBehaviour, THandler, THandlerInEvent, THandlerOutEvent, ToSwarm,
    },
    Multiaddr, PeerId,
};

/// Why the gate refused a connection (reported to the swarm, and logged at debug level).
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refused {
    /// `max_peers` connections are established.
    #[error("{0} connections established, the limit")]
    Full(usize),
    /// `max_inbound` inbound connections of non-reserved peers are established.
    #[error("{0} inbound connections established, the limit")]
    InboundFull(usize),
    /// The remote IP holds `max_per_ip` inbound connections already.
    #[error("{ip} already holds {limit} inbound connections")]
    TooManyFromIp {
        /// The remote address.
        ip: IpAddr,
        /// The per-IP limit.
        limit: usize,
    },
}

/// A counted connection: inbound non-reserved ones carry their remote IP.
struct Counted {
    inbound_from: Option<IpAddr>,
}

/// The connection gate; see the module documentation.
pub(crate) struct ConnectionGate {
    max_peers: usize,
    max_inbound: usize,
    max_per_ip: usize,
    reserved: HashSet<PeerId>,
    connections: HashMap<ConnectionId, Counted>,
    inbound: usize,
    per_ip: HashMap<IpAddr, usize>,
}

impl ConnectionGate {
    pub(crate) fn new(max_peers: u32, max_inbound: u32, max_per_ip: u32) -> Self {
        Self {
            max_peers: max_peers as usize,
            max_inbound: max_inbound as usize,
            max_per_ip: max_per_ip as usize,
            reserved: HashSet::new(),
            connections: HashMap::new(),
            inbound: 0,
            per_ip: HashMap::new(),
        }
    }

    /// Replaces the set of peers that are always admitted.
    pub(crate) fn set_reserved(&mut self, reserved: HashSet<PeerId>) {
        self.reserved = reserved;
    }

    /// Admits or refuses a connection of `peer`; `inbound_from` is the remote IP of an inbound
    /// connection. An admitted connection is counted at once rather than on
    /// `ConnectionEstablished`, so that handshakes completing together cannot all pass.
    fn admit(
        &mut self,
        connection: ConnectionId,
        peer: PeerId,
        inbound_from: Option<IpAddr>,
    ) -> Result<(), Refused> {
        if self.reserved.contains(&peer) {
            self.connections
                .insert(connection, Counted { inbound_from: None });
            return Ok(());
        }
        if self.connections.len() >= self.max_peers {
            return Err(Refused::Full(self.connections.len()));
        }
        if let Some(ip) = inbound_from {
            if self.inbound >= self.max_inbound {
                return Err(Refused::InboundFull(self.inbound));
            }
            let from_ip = self.per_ip.entry(ip).or_default();
            if *from_ip >= self.max_per_ip {
                return Err(Refused::TooManyFromIp {
                    ip,
                    limit: self.max_per_ip,
                });
            }
            *from_ip += 1;
            self.inbound += 1;
        }
        self.connections
            .insert(connection, Counted { inbound_from });
        Ok(())
    }

    fn forget(&mut self, connection: ConnectionId) {
        let Some(Counted {
            inbound_from: Some(ip),
        }) = self.connections.remove(&connection)
        else {
            return;
        };
        self.inbound -= 1;
        if let Some(n) = self.per_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&ip);
            }
        }
    }
}

fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    })
}

impl NetworkBehaviour for ConnectionGate {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        connection: ConnectionId,
        peer: PeerId,
        _local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        // An address without IP (e.g. a memory transport) counts as one shared address.
        let ip = ip_of(remote_addr).unwrap_or(IpAddr::from([0, 0, 0, 0]));
        self.admit(connection, peer, Some(ip))
            .map_err(ConnectionDenied::new)?;
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        connection: ConnectionId,
        peer: PeerId,
        _addr: &Multiaddr,
        _role_override: Endpoint,
        _port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.admit(connection, peer, None)
            .map_err(ConnectionDenied::new)?;
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ConnectionClosed(ConnectionClosed { connection_id, .. }) => {
                self.forget(connection_id)
            }
            // Admitted here but refused by a behaviour polled after this one: never established.
            FromSwarm::ListenFailure(ListenFailure { connection_id, .. }) => {
                self.forget(connection_id)
            }
            FromSwarm::DialFailure(failure) => self.forget(failure.connection_id),
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _peer: PeerId,
        _connection: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Infallible, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([10, 0, 0, last]))
    }

    #[test]
    fn strangers_are_bounded_reserved_peers_never_refused() {
        let mut gate = ConnectionGate::new(4, 3, 2);
        let friend = PeerId::random();
        gate.set_reserved([friend].into());
        let mut next = 0;
        let mut id = || {
            next += 1;
            ConnectionId::new_unchecked(next)
        };
        // Two from one IP, then that IP is full.
        gate.admit(id(), PeerId::random(), ip(1)).unwrap();
        gate.admit(id(), PeerId::random(), ip(1)).unwrap();
        assert!(matches!(
            gate.admit(id(), PeerId::random(), ip(1)),
            Err(Refused::TooManyFromIp { limit: 2, .. })
        ));
        // A third stranger from elsewhere fills the inbound slots.
        let third = id();
        gate.admit(third, PeerId::random(), ip(2)).unwrap();
        assert!(matches!(
            gate.admit(id(), PeerId::random(), ip(3)),
            Err(Refused::InboundFull(3))
        ));
        // An outbound connection still fits, then the node is full for strangers...
        gate.admit(id(), PeerId::random(), None).unwrap();
        assert!(matches!(
            gate.admit(id(), PeerId::random(), None),
            Err(Refused::Full(4))
        ));
        // ...but not for a reserved peer, inbound or outbound, from any address.
        gate.admit(id(), friend, ip(1)).unwrap();
        gate.admit(id(), friend, None).unwrap();
        // Closing a counted connection frees its slots.
        gate.forget(third);
        assert_eq!(gate.inbound, 2);
        assert!(!gate.per_ip.contains_key(&ip(2).unwrap()));
        assert!(matches!(
            gate.admit(id(), PeerId::random(), ip(3)),
            Err(Refused::Full(_))
        ));
    }
}
