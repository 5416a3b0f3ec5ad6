//! The admission table: exact limits, releases, bans, readdressing behind a balancer.

use super::table::key_ip;
use super::*;

fn ip(n: u32) -> IpAddr {
    IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + n))
}

#[test]
fn limits_are_exact_and_released_once() {
    let a = Admission::new(3);
    let t1 = a.admit(ip(1), 3, 2).unwrap();
    let t2 = a.admit(ip(1), 3, 2).unwrap();
    assert_eq!(a.admit(ip(1), 3, 2), Err(Refusal::PerIp));
    let t3 = a.admit(ip(2), 3, 2).unwrap();
    assert_eq!(a.admit(ip(3), 3, 2), Err(Refusal::Full));
    assert_eq!(a.sessions(), 3);
    a.release(t1);
    a.release(t1);
    assert_eq!(a.sessions(), 2, "a second release is a no-op");
    let t4 = a.admit(ip(1), 3, 2).unwrap();
    assert_eq!(t4.index, t1.index, "the freed ticket is reused");
    a.release(t1);
    assert_eq!(
        a.sessions(),
        3,
        "an old ticket does not release its successor"
    );
    for t in [t2, t3, t4] {
        a.release(t);
    }
    assert_eq!(a.sessions(), 0);
    assert_eq!(a.addrs.used(), 0, "no entry left");
    a.set_draining();
    assert_eq!(a.admit(ip(9), 3, 2), Err(Refusal::ShuttingDown));
    assert!(a.summary().contains("per_ip=1 banned=0 shutting_down=1"));
}

/// Behind a balancer: admitted under the balancer's address with only max_cons
/// checked, then moved to the client its PROXY header names, whose bans and per-address
/// limit apply; a release frees the client's count, not the balancer's.
#[test]
fn a_proxied_session_moves_to_its_client() {
    let a = Admission::new(8);
    let (lb, c1, c2) = (ip(100), ip(1), ip(2));
    let t1 = a.admit_unaddressed(lb, 8).unwrap();
    let t2 = a.admit_unaddressed(lb, 8).unwrap();
    let t3 = a.admit_unaddressed(lb, 8).unwrap();
    assert_eq!(
        a.admit(lb, 8, 1),
        Err(Refusal::PerIp),
        "three under the balancer"
    );
    assert_eq!(a.readdress(t1, c1, 1), Ok(()));
    assert_eq!(
        a.readdress(t2, c1, 1),
        Err(Refusal::PerIp),
        "c1 has its one"
    );
    assert_eq!(a.readdress(t3, c2, 1), Ok(()));
    let find = Duration::from_secs(600);
    assert_eq!(a.login_failed(c2, 1, find, find), Strike::Banned);
    let t4 = a.admit_unaddressed(lb, 8).unwrap();
    assert_eq!(a.readdress(t4, c2, 0), Err(Refusal::Banned));
    assert_eq!(a.sessions(), 4);
    for t in [t1, t2, t3, t4] {
        a.release(t);
    }
    assert_eq!(a.sessions(), 0);
    assert!(
        a.admit(c1, 8, 1).is_ok(),
        "c1's count went with its session"
    );
    assert!(a.admit(lb, 8, 1).is_ok(), "so did the balancer's");
    a.release(t1);
    assert_eq!(
        a.readdress(t1, c2, 0),
        Ok(()),
        "a released ticket is left alone"
    );
    a.set_draining();
    assert_eq!(a.admit_unaddressed(lb, 8), Err(Refusal::ShuttingDown));
}

#[test]
fn a_dead_owner_is_released_by_pid() {
    let a = Admission::new(0);
    let _t = a.admit(ip(1), 0, 0).unwrap();
    let _u = a.admit(ip(2), 0, 0).unwrap();
    assert_eq!(a.release_owned_by(std::process::id()), 2);
    assert_eq!(a.sessions(), 0);
}

#[test]
fn failures_ban_within_the_window() {
    let a = Admission::new(8);
    let (find, ban) = (Duration::from_secs(600), Duration::from_secs(600));
    assert_eq!(a.login_failed(ip(1), 3, find, ban), Strike::Counted);
    assert_eq!(a.login_failed(ip(2), 3, find, ban), Strike::Counted);
    assert_eq!(a.login_failed(ip(1), 3, find, ban), Strike::Counted);
    assert_eq!(a.login_failed(ip(1), 3, find, ban), Strike::Banned);
    assert_eq!(a.login_failed(ip(1), 3, find, ban), Strike::AlreadyBanned);
    assert!(a.is_banned(ip(1)) && !a.is_banned(ip(2)));
    assert_eq!(a.admit(ip(1), 0, 0), Err(Refusal::Banned));
    assert!(a.admit(ip(2), 0, 0).is_ok());
    // A zero ban time ends at once; a zero window never adds failures up.
    let z = Duration::ZERO;
    assert_eq!(a.login_failed(ip(3), 2, z, z), Strike::Counted);
    assert_eq!(a.login_failed(ip(3), 2, z, z), Strike::Counted);
    assert_eq!(a.login_failed(ip(3), 1, find, z), Strike::Banned);
    assert!(!a.is_banned(ip(3)));
}

#[test]
fn a_full_table_forgets_the_oldest_record_and_keeps_every_key_reachable() {
    let a = Admission::new(1); // 1024 entries, 768 usable
    let (find, ban) = (Duration::from_secs(600), Duration::from_secs(600));
    for n in 0..2000 {
        a.login_failed(ip(n), 5, find, ban);
    }
    assert!(a.addrs.used() <= 768);
    // Every recorded key is still found after all the shifting.
    let found = (0..2000)
        .filter(|n| a.addrs.find(key(ip(*n))).is_some())
        .count();
    assert_eq!(found, a.addrs.used() as usize);
    assert!(
        a.admit(ip(5000), 1, 0).is_ok(),
        "room is made for a session"
    );
}

#[test]
fn backward_shift_keeps_runs_intact() {
    let a = Admission::new(600);
    let keys: Vec<IpAddr> = (0..600).map(ip).collect();
    let tickets: Vec<Ticket> = keys.iter().map(|k| a.admit(*k, 0, 0).unwrap()).collect();
    for (n, t) in tickets.iter().enumerate() {
        if n % 3 == 0 {
            a.release(*t);
        }
    }
    for (n, k) in keys.iter().enumerate() {
        assert_eq!(a.addrs.find(key(*k)).is_some(), n % 3 != 0, "{k}");
    }
}

#[test]
fn ipv4_and_mapped_ipv6_are_one_address() {
    let a = Admission::new(4);
    let v4: IpAddr = "192.0.2.1".parse().unwrap();
    let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
    let _t = a.admit(v4, 0, 1).unwrap();
    assert_eq!(a.admit(mapped, 0, 1), Err(Refusal::PerIp));
    assert_eq!(key_ip(key(mapped)), v4);
}
