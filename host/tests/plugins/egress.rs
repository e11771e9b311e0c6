//! `allowed_outbound_hosts` rules and the address check.

use std::net::IpAddr;

use weft::plugins::egress::{Egress, is_public};

#[test]
fn entries_match_scheme_host_and_port() {
    let egress =
        Egress::parse(&["https://api.example.org".into(), "http://10.0.0.5:8080".into(), "https://*.cdn.example".into(), "internal.example:*".into()], false)
            .unwrap();
    assert!(egress.check_url("https://api.example.org/v1?x=1").is_ok());
    assert!(egress.check_url("https://API.example.org:443/").is_ok());
    assert!(egress.check_url("http://api.example.org/").is_err(), "scheme differs");
    assert!(egress.check_url("https://api.example.org:8443/").is_err(), "port differs");
    assert!(egress.check_url("https://evil.api.example.org/").is_err(), "no implicit subdomains");
    assert!(egress.check_url("http://10.0.0.5:8080/").is_ok());
    assert!(egress.check_url("https://a.cdn.example/").is_ok());
    assert!(egress.check_url("https://cdn.example/").is_err(), "a wildcard is not the apex");
    assert!(egress.check_url("http://internal.example:9999/").is_ok());
    assert!(egress.check_url("ftp://api.example.org/").is_err());
    assert!(egress.check_url("not a url").is_err());
    for bad in ["ftp://x.org", "https://", "https://a.*.org", "https://x.org/path", "x.org:port"] {
        assert!(Egress::parse(&[bad.into()], false).is_err(), "{bad}");
    }
}

#[test]
fn private_and_special_addresses_are_refused_unless_allowed() {
    for address in
        ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0", "::1", "fd00::1", "fe80::1", "::ffff:127.0.0.1"]
    {
        let ip: IpAddr = address.parse().unwrap();
        assert!(!is_public(ip), "{address}");
        assert!(Egress::parse(&[], false).unwrap().check_address(ip).is_err());
        assert!(Egress::parse(&[], true).unwrap().check_address(ip).is_ok());
    }
    for address in ["93.184.216.34", "2606:4700::1111"] {
        assert!(is_public(address.parse().unwrap()), "{address}");
    }
}
