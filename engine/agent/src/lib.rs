//! berth guest agent: the wire protocol shared by the guest binary and the host client.
//!
//! The agent runs inside a VM and talks to the host over one virtio-serial port named
//! [`PORT_NAME`]. Both directions carry frames (see [`proto`]): a small JSON header that
//! names an operation and a stream id, followed by an opaque binary payload. Streams let
//! many execs and file transfers share the one port.

pub mod proto;

/// The virtio-serial port name the host gives the agent channel (`-device virtserialport,name=…`).
pub const PORT_NAME: &str = "org.berth.agent.0";

/// Protocol version carried in the hello exchange; bump on incompatible changes.
pub const PROTOCOL_VERSION: u32 = 1;
