//! ftpdlib: a blocking FTP server library.
