//! The per-peer connection limit, aware of relayed paths: at most `max_direct` direct connections
//! to a peer, and one relayed connection only while the peer has no other.
//!
//! Why not libp2p's `connection_limits` per-peer count: it counts every connection alike. Two
//! nodes behind NATs that both reach each other through a relay at about the same time (a deal
//! retry on each side) end up with two relayed connections, the per-peer limit; the direct
//! connections that hole punching then dials are denied by that limit, and dcutr gives up ("Giving
//! up after 3 dial attempts", seen in 2 of 17 runs of the NAT test). Here a second relayed
//! connection is refused instead (the first one carries everything), and a direct connection is
//! always let in next to a relayed one: it is what the relayed one is waiting for.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::task::{Context, Poll};

use libp2p::PeerId;
use libp2p::core::transport::PortUse;
use libp2p::core::{Endpoint, Multiaddr};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::behaviour::ConnectionEstablished;
use libp2p::swarm::{
    ConnectionClosed, ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm, dummy,
};

/// Why a connection to a peer was refused by this node's per-peer limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathDenied {
    #[error("a relayed connection to a peer already connected")]
    RelayedBesideAnother,
    #[error("{0} direct connections to this peer already (the per-peer limit)")]
    DirectLimit(usize),
}

/// The connections to one peer, by kind.
#[derive(Debug, Default)]
struct Paths {
    direct: HashSet<ConnectionId>,
    relayed: HashSet<ConnectionId>,
}

impl Paths {
    /// Whether one more connection, relayed or not, may join these.
    fn admit(&self, relayed: bool, max_direct: usize) -> Result<(), PathDenied> {
        if relayed {
            if self.direct.is_empty() && self.relayed.is_empty() {
                Ok(())
            } else {
                Err(PathDenied::RelayedBesideAnother)
            }
        } else if self.direct.len() >= max_direct {
            Err(PathDenied::DirectLimit(self.direct.len()))
        } else {
            Ok(())
        }
    }
}

/// Whether an address goes through a relay (`/p2p-circuit`).
pub fn is_relayed(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| matches!(p, Protocol::P2pCircuit))
}

/// The behaviour: it only says yes or no to established connections.
#[derive(Debug)]
pub struct Behaviour {
    max_direct: usize,
    peers: HashMap<PeerId, Paths>,
}

impl Behaviour {
    pub fn new(max_direct: u32) -> Self {
        Behaviour { max_direct: max_direct.max(1) as usize, peers: HashMap::new() }
    }

    fn check(&self, peer: &PeerId, addr: &Multiaddr) -> Result<(), ConnectionDenied> {
        match self.peers.get(peer) {
            Some(paths) => paths.admit(is_relayed(addr), self.max_direct).map_err(ConnectionDenied::new),
            None => Ok(()),
        }
    }
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.check(&peer, remote)?;
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.check(&peer, addr)?;
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ConnectionEstablished(ConnectionEstablished { peer_id, connection_id, endpoint, .. }) => {
                let paths = self.peers.entry(peer_id).or_default();
                if is_relayed(endpoint.get_remote_address()) {
                    paths.relayed.insert(connection_id);
                } else {
                    paths.direct.insert(connection_id);
                }
            }
            FromSwarm::ConnectionClosed(ConnectionClosed { peer_id, connection_id, .. }) => {
                if let Some(paths) = self.peers.get_mut(&peer_id) {
                    paths.direct.remove(&connection_id);
                    paths.relayed.remove(&connection_id);
                    if paths.direct.is_empty() && paths.relayed.is_empty() {
                        self.peers.remove(&peer_id);
                    }
                }
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(&mut self, _: PeerId, _: ConnectionId, event: THandlerOutEvent<Self>) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_direct_connection_joins_a_relayed_one_and_a_second_relayed_one_does_not() {
        let mut p = Paths::default();
        assert_eq!(p.admit(true, 2), Ok(()), "the first connection may be relayed");
        p.relayed.insert(ConnectionId::new_unchecked(1));
        assert_eq!(p.admit(true, 2), Err(PathDenied::RelayedBesideAnother));
        assert_eq!(p.admit(false, 2), Ok(()), "the hole punch's direct connection");
        p.direct.insert(ConnectionId::new_unchecked(2));
        assert_eq!(p.admit(false, 2), Ok(()));
        p.direct.insert(ConnectionId::new_unchecked(3));
        assert_eq!(p.admit(false, 2), Err(PathDenied::DirectLimit(2)));
        p.relayed.clear();
        assert_eq!(p.admit(true, 2), Err(PathDenied::RelayedBesideAnother), "no relay beside a direct path");
    }

    #[test]
    fn relayed_addresses_are_those_through_a_circuit() {
        let relayed: Multiaddr =
            "/ip4/203.0.113.1/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN/p2p-circuit"
                .parse()
                .unwrap();
        assert!(is_relayed(&relayed));
        assert!(!is_relayed(&"/ip4/192.168.1.2/tcp/4001".parse().unwrap()));
    }
}
