//! `tftpd`: the TFTP server binary (fbtftp-style framework, tftp-hpa-style flags).
fn main() -> std::process::ExitCode {
    ftpdlib::tftp::cli::main()
}
