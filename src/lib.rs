//! ftpdlib: a blocking FTP server library.

#![warn(missing_docs)]

pub mod authorizers;
pub mod error;
pub mod filesystems;
pub mod proto;
