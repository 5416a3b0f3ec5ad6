//! ftpdlib: a blocking FTP server library.

#![warn(missing_docs)]

pub mod authorizers;
pub mod cli;
pub mod error;
pub mod filesystems;
pub mod handlers;
pub mod proto;
pub mod servers;

pub use error::{AuthenticationFailed, AuthorizerError, Error};
