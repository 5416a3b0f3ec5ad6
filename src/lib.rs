//! ftpdlib: a blocking FTP server library.

/// TFTP server framework in the spirit of fbtftp (RFC 1350, 2347–2349, 7440).
pub mod tftp;
