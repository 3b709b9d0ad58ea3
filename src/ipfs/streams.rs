//! Bitswap streams for the swarm: every inbound stream in any bitswap version, and
//! outbound streams on request, negotiated to the newest version the peer speaks.
//!
//! Why not `libp2p-stream`: it hands inbound streams over a channel with room for one and
//! drops any stream that arrives while the previous one has not been taken yet. Kubo opens
//! a new stream for every message it sends, so under load its blocks were silently lost.
//! Here inbound streams go into an unbounded queue (a stream costs little until read, and
//! peers are bounded by the connection limits), and outbound requests carry their own
//! reply channel, so several can be in flight on one connection.

use std::collections::{HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::future::{Ready, ready};
use std::task::{Context, Poll};

use libp2p::core::transport::PortUse;
use libp2p::core::{Endpoint, InboundUpgrade, OutboundUpgrade, UpgradeInfo};
use libp2p::swarm::handler::{ConnectionEvent, DialUpgradeError, FullyNegotiatedInbound, FullyNegotiatedOutbound};
use libp2p::swarm::{
    ConnectionDenied, ConnectionHandler, ConnectionHandlerEvent, ConnectionId, FromSwarm, NetworkBehaviour,
    NotifyHandler, Stream, StreamProtocol, StreamUpgradeError, SubstreamProtocol, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm,
};
use libp2p::{Multiaddr, PeerId};
use tokio::sync::{mpsc, oneshot};

use super::bitswap::PROTOCOLS;

/// An inbound stream: who opened it, and in which bitswap version.
pub type Inbound = (PeerId, Stream, &'static str);

/// The answer to an outbound request: the stream and the version negotiated.
pub type Opened = Result<(Stream, &'static str), String>;

/// Asks the behaviour for an outbound stream to a connected peer.
#[derive(Clone)]
pub struct Opener(mpsc::UnboundedSender<(PeerId, oneshot::Sender<Opened>)>);

impl Opener {
    pub async fn open(&self, peer: PeerId) -> Opened {
        let (tx, rx) = oneshot::channel();
        self.0.send((peer, tx)).map_err(|_| "the node is stopping".to_string())?;
        rx.await.map_err(|_| "the connection closed".to_string())?
    }
}

pub struct Behaviour {
    inbound: mpsc::UnboundedSender<Inbound>,
    requests: mpsc::UnboundedReceiver<(PeerId, oneshot::Sender<Opened>)>,
    connections: HashMap<PeerId, HashSet<ConnectionId>>,
    ready: VecDeque<(PeerId, ConnectionId, OpenRequest)>,
}

impl Behaviour {
    /// The behaviour, where inbound streams arrive, and how to ask for outbound ones.
    pub fn new() -> (Behaviour, mpsc::UnboundedReceiver<Inbound>, Opener) {
        let (inbound, inbound_rx) = mpsc::unbounded_channel();
        let (req_tx, requests) = mpsc::unbounded_channel();
        let b = Behaviour { inbound, requests, connections: HashMap::new(), ready: VecDeque::new() };
        (b, inbound_rx, Opener(req_tx))
    }

    fn handler(&self, peer: PeerId) -> Handler {
        Handler { peer, inbound: self.inbound.clone(), pending: VecDeque::new() }
    }
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = Handler;
    type ToSwarm = Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(self.handler(peer))
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(self.handler(peer))
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ConnectionEstablished(e) => {
                self.connections.entry(e.peer_id).or_default().insert(e.connection_id);
            }
            FromSwarm::ConnectionClosed(e) => {
                if let Some(set) = self.connections.get_mut(&e.peer_id) {
                    set.remove(&e.connection_id);
                    if set.is_empty() {
                        self.connections.remove(&e.peer_id);
                    }
                }
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(&mut self, _: PeerId, _: ConnectionId, event: THandlerOutEvent<Self>) {
        match event {}
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        while let Poll::Ready(Some((peer, reply))) = self.requests.poll_recv(cx) {
            match self.connections.get(&peer).and_then(|c| c.iter().next()) {
                Some(&conn) => self.ready.push_back((peer, conn, OpenRequest(reply))),
                None => {
                    let _ = reply.send(Err(format!("not connected to {peer}")));
                }
            }
        }
        match self.ready.pop_front() {
            Some((peer_id, conn, request)) => {
                Poll::Ready(ToSwarm::NotifyHandler { peer_id, handler: NotifyHandler::One(conn), event: request })
            }
            None => Poll::Pending,
        }
    }
}

/// One outbound stream wanted: where to send it.
pub struct OpenRequest(oneshot::Sender<Opened>);

impl std::fmt::Debug for OpenRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OpenRequest")
    }
}

pub struct Handler {
    peer: PeerId,
    inbound: mpsc::UnboundedSender<Inbound>,
    pending: VecDeque<OpenRequest>,
}

impl ConnectionHandler for Handler {
    type FromBehaviour = OpenRequest;
    type ToBehaviour = Infallible;
    type InboundProtocol = Versions;
    type OutboundProtocol = Versions;
    type InboundOpenInfo = ();
    type OutboundOpenInfo = OpenRequest;

    fn listen_protocol(&self) -> SubstreamProtocol<Versions, ()> {
        SubstreamProtocol::new(Versions, ())
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ConnectionHandlerEvent<Versions, OpenRequest, Infallible>> {
        match self.pending.pop_front() {
            Some(request) => Poll::Ready(ConnectionHandlerEvent::OutboundSubstreamRequest {
                protocol: SubstreamProtocol::new(Versions, request),
            }),
            None => Poll::Pending,
        }
    }

    fn on_behaviour_event(&mut self, request: OpenRequest) {
        self.pending.push_back(request);
    }

    fn on_connection_event(&mut self, event: ConnectionEvent<Versions, Versions, (), OpenRequest>) {
        match event {
            ConnectionEvent::FullyNegotiatedInbound(FullyNegotiatedInbound { protocol: (stream, version), .. }) => {
                let _ = self.inbound.send((self.peer, stream, version));
            }
            ConnectionEvent::FullyNegotiatedOutbound(FullyNegotiatedOutbound {
                protocol: (stream, version),
                info: OpenRequest(reply),
            }) => {
                let _ = reply.send(Ok((stream, version)));
            }
            ConnectionEvent::DialUpgradeError(DialUpgradeError { info: OpenRequest(reply), error }) => {
                let why = match error {
                    StreamUpgradeError::NegotiationFailed => "speaks no bitswap version we know".to_string(),
                    StreamUpgradeError::Timeout => "timed out opening a stream".to_string(),
                    StreamUpgradeError::Io(e) => e.to_string(),
                    StreamUpgradeError::Apply(never) => match never {},
                };
                let _ = reply.send(Err(why));
            }
            _ => {}
        }
    }
}

/// Every bitswap version, newest first: the remote picks (inbound) or accepts (outbound)
/// the first it speaks.
pub struct Versions;

impl UpgradeInfo for Versions {
    type Info = StreamProtocol;
    type InfoIter = std::iter::Map<std::array::IntoIter<&'static str, 4>, fn(&'static str) -> StreamProtocol>;

    fn protocol_info(&self) -> Self::InfoIter {
        PROTOCOLS.into_iter().map(StreamProtocol::new as fn(&'static str) -> StreamProtocol)
    }
}

fn version_of(p: &StreamProtocol) -> &'static str {
    PROTOCOLS.into_iter().find(|v| *v == p.as_ref()).unwrap_or(PROTOCOLS[0])
}

impl InboundUpgrade<Stream> for Versions {
    type Output = (Stream, &'static str);
    type Error = Infallible;
    type Future = Ready<Result<Self::Output, Infallible>>;

    fn upgrade_inbound(self, stream: Stream, p: StreamProtocol) -> Self::Future {
        ready(Ok((stream, version_of(&p))))
    }
}

impl OutboundUpgrade<Stream> for Versions {
    type Output = (Stream, &'static str);
    type Error = Infallible;
    type Future = Ready<Result<Self::Output, Infallible>>;

    fn upgrade_outbound(self, stream: Stream, p: StreamProtocol) -> Self::Future {
        ready(Ok((stream, version_of(&p))))
    }
}
