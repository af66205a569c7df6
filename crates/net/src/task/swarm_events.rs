//! What the swarm reports: connections, gossip, Kademlia, identify, sync and ping events.

use super::*;

impl Task {
    pub(super) fn handle_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        self.libp2p_metrics.record(&event);
        match event {
            SwarmEvent::Behaviour(event) => self.handle_behaviour_event(event),
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "listening");
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => {
                let (addr, dialled) = match endpoint {
                    ConnectedPoint::Dialer { address, .. } => (address, true),
                    ConnectedPoint::Listener { send_back_addr, .. } => (send_back_addr, false),
                };
                tracing::debug!(peer = %peer_id, %addr, "connection established");
                let state = self.peers.entry(peer_id).or_default();
                if dialled
                    && !state.dialled.contains(&addr)
                    && state.dialled.len() < DIALLED_ADDRS_PER_PEER
                {
                    state.dialled.push(addr.clone());
                }
                state.connections.insert(connection_id, addr);
                self.metrics.connected_peers.set(self.peers.len() as i64);
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established,
                cause,
                ..
            } => {
                tracing::debug!(peer = %peer_id, ?cause, "connection closed");
                if let Some(state) = self.peers.get_mut(&peer_id) {
                    state.connections.remove(&connection_id);
                }
                if num_established == 0 {
                    self.persistent.disconnected(&peer_id, Instant::now());
                    self.bootstrap.disconnected(&peer_id, Instant::now());
                    if let Some(state) = self.peers.remove(&peer_id) {
                        if state.announced {
                            tracing::info!(peer = %peer_id, "peer disconnected");
                            // Last seen now.
                            if let Some(table) = &mut self.peer_table {
                                table.record(peer_id, []);
                            }
                            self.emit(NetEvent::PeerDisconnected(peer_id));
                        }
                    }
                }
                self.metrics.connected_peers.set(self.peers.len() as i64);
            }
            SwarmEvent::IncomingConnectionError {
                send_back_addr,
                error,
                ..
            } => {
                // Garbage on the port, a failed handshake or a refused connection: drop and move on.
                tracing::debug!(%send_back_addr, %error, "incoming connection failed");
                if let ListenError::Denied { .. } = error {
                    self.metrics.refused_connections.inc();
                }
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                tracing::debug!(peer = ?peer_id, %error, "outgoing connection failed");
            }
            SwarmEvent::ListenerError { error, .. } => {
                tracing::warn!(%error, "listener error");
            }
            _ => {}
        }
    }

    fn handle_behaviour_event(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Gossipsub(event) => {
                self.libp2p_metrics.record(&event);
                self.handle_gossipsub(event);
            }
            BehaviourEvent::Kad(event) => {
                self.libp2p_metrics.record(&event);
                self.handle_kad(event);
            }
            BehaviourEvent::Identify(event) => {
                self.libp2p_metrics.record(&event);
                if let identify::Event::Received { peer_id, info, .. } = event {
                    self.handle_identify(peer_id, info);
                }
            }
            BehaviourEvent::Sync(event) => self.handle_sync(event),
            BehaviourEvent::Ping(event) => {
                self.libp2p_metrics.record(&event);
                // libp2p-ping no longer closes a connection whose pings fail; a dead
                // connection (a peer paused, partitioned or moved to another address) would
                // otherwise linger for minutes and hide the peer's new address from us.
                if let Err(error) = &event.result {
                    tracing::debug!(peer = %event.peer, %error, "ping failed; closing the connection");
                    self.swarm.close_connection(event.connection);
                }
            }
            BehaviourEvent::Limits(never)
            | BehaviourEvent::Gate(never)
            | BehaviourEvent::Blocked(never) => match never {},
        }
    }

    fn handle_gossipsub(&mut self, event: gossipsub::Event) {
        match event {
            gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            } => {
                let id = MessageId(message_id);
                let delivered = match self.topics.get(&message.topic) {
                    Some(&topic) => self.emit(NetEvent::Gossip {
                        topic,
                        data: message.data,
                        id: id.clone(),
                        source: propagation_source,
                    }),
                    None => false,
                };
                if !delivered {
                    // Nobody will validate it: release it from the cache without penalty.
                    self.report(&id, &propagation_source, Acceptance::Ignore);
                }
            }
            gossipsub::Event::Subscribed { peer_id, topic } => {
                tracing::debug!(peer = %peer_id, %topic, "peer subscribed");
                if let Some(&topic) = self.topics.get(&topic) {
                    self.flush_pending(Some(topic));
                    self.emit(NetEvent::PeerSubscribed {
                        peer: peer_id,
                        topic,
                    });
                }
            }
            gossipsub::Event::GossipsubNotSupported { peer_id } => {
                tracing::debug!(peer = %peer_id, "peer does not speak gossipsub");
            }
            gossipsub::Event::SlowPeer { peer_id, .. } => {
                tracing::debug!(peer = %peer_id, "slow gossip peer");
            }
            gossipsub::Event::Unsubscribed { .. } => {}
        }
    }

    fn handle_kad(&mut self, event: kad::Event) {
        if let kad::Event::RoutingUpdated {
            peer,
            is_new_peer: true,
            addresses,
            ..
        } = event
        {
            // A saved peer seeded at start beyond the few dialled: kept for Kademlia's walks.
            if self.quiet_seeds.remove(&peer) {
                return;
            }
            // Discovery connects us to the peers it finds, up to the limit.
            if !self.swarm.is_connected(&peer)
                && self.peers.len() < self.max_peers
                && !self.banned.contains_key(&peer)
            {
                tracing::debug!(%peer, "dialling discovered peer");
                self.dial(
                    DialOpts::peer_id(peer)
                        .addresses(addresses.into_vec())
                        .condition(PeerCondition::DisconnectedAndNotDialing)
                        .build(),
                );
            }
        }
    }

    fn handle_identify(&mut self, peer: PeerId, info: identify::Info) {
        if info.protocol_version != self.protocols.identify_version {
            tracing::warn!(
                %peer,
                theirs = %info.protocol_version,
                ours = %self.protocols.identify_version,
                "peer belongs to another chain; disconnecting"
            );
            // Several connections of one stranger are one disconnected peer.
            if self.ban(peer, WRONG_CHAIN_BAN) {
                self.metrics.wrong_chain_peers.inc();
            }
            return;
        }
        if info.protocols.contains(&self.protocols.kad) {
            // Listen addresses, not the ephemeral port of an inbound connection, are what other
            // nodes must dial.
            for addr in &info.listen_addrs {
                self.swarm
                    .behaviour_mut()
                    .kad
                    .add_address(&peer, addr.clone());
            }
        }
        let Some(state) = self.peers.get_mut(&peer) else {
            return;
        };
        // A peer of our chain reached on an established connection: worth remembering, at
        // the addresses we dialled (proven) and then those it announces.
        if let Some(table) = &mut self.peer_table {
            table.record(
                peer,
                state
                    .dialled
                    .iter()
                    .cloned()
                    .chain(info.listen_addrs.iter().cloned()),
            );
            self.metrics.saved_peers.set(table.peers().len() as i64);
        }
        self.persistent.connected(&peer);
        self.bootstrap.connected(&peer);
        state.agent = Some(info.agent_version);
        state.protocol_version = Some(info.protocol_version);
        if !state.announced {
            state.announced = true;
            tracing::info!(%peer, agent = ?state.agent, "peer connected");
            self.emit(NetEvent::PeerConnected(peer));
        }
    }

    fn handle_sync(&mut self, event: request_response::Event<Vec<u8>, Vec<u8>>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    // If the node is saturated the channel is dropped and the peer sees a failure.
                    self.emit(NetEvent::SyncRequest {
                        peer,
                        request,
                        channel: ResponseToken(channel),
                    });
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some(reply) = self.outbound.remove(&request_id) {
                        let _ = reply.send(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                if let Some(reply) = self.outbound.remove(&request_id) {
                    let _ = reply.send(Err(NetError::Request {
                        peer,
                        reason: error.to_string(),
                    }));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "inbound sync request failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }
}
