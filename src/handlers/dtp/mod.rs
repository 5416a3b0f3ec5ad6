//! Moving bytes (pyftpdlib's `DTPHandler`, `ThrottledDTPHandler` and `TLS_DTPHandler`): the
//! data connection's stream and socket options, the transfer loops, the pipelined upload
//! writer, the TLS stream and the throttle. Everything here takes plain values — a stream,
//! a file or a listing's lines, a sink, rates, the control connection's descriptor to watch —
//! and never a session or a command: the session's data-channel part
//! ([`DataChannel`](super::session::DataChannel)) owns a transfer and runs it.

pub(crate) mod splice;
pub(crate) mod stream;
pub mod throttle;
#[cfg(feature = "tls")]
pub(crate) mod tls_stream;
#[cfg(not(feature = "tls"))]
pub(crate) use super::tls::stream as tls_stream;
pub(crate) mod transfer;
pub(crate) mod writer;

pub(crate) use stream::{accept_from, limit_socket_buffers, out_of_descriptors, Stream};
pub(crate) use transfer::{Download, Outcome, Settings, Source, Step, Upload, Watch};
