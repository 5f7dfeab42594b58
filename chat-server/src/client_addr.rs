//! Which address a connection comes from, for the per-address connection
//! limit. Directly, it is the TCP peer. Behind a load balancer every peer is
//! the proxy, so with `--trusted-proxies` a peer inside those ranges is taken
//! to speak for the client: the address is the right-most `X-Forwarded-For`
//! entry that is not itself a trusted proxy. Anyone else's header is ignored,
//! so a client cannot pick its own address.

use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, request::Parts};
use ipnet::IpNet;

#[derive(Debug, Default, Clone)]
pub struct ClientAddr {
    trusted: Vec<IpNet>,
}

impl ClientAddr {
    pub fn new(trusted: Vec<IpNet>) -> Self {
        Self { trusted }
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// The client's address for a handshake request.
    pub fn of(&self, parts: &Parts) -> Option<IpAddr> {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>()?.0.ip();
        Some(self.resolve(peer, &parts.headers))
    }

    fn resolve(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        // Proxies append: read right to left, past the proxies we trust.
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .collect();
        for hop in hops.iter().rev() {
            match hop.trim().parse::<IpAddr>() {
                Ok(ip) if self.trusts(ip) => continue,
                Ok(ip) => return ip,
                // Garbage: nothing left of it can be trusted.
                Err(_) => return peer,
            }
        }
        peer
    }
}

/// `10.0.0.0/8` or a single address (`10.1.2.3`).
pub fn parse_net(value: &str) -> Result<IpNet, String> {
    value
        .parse::<IpNet>()
        .or_else(|_| value.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{value:?} is not an address or CIDR range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append("x-forwarded-for", v.parse().unwrap());
        }
        map
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn only_trusted_proxies_speak_for_the_client() {
        let behind = ClientAddr::new(vec![parse_net("10.0.0.0/8").unwrap()]);
        let proxy = ip("10.1.2.3");
        // The ingress appended the client it saw.
        assert_eq!(
            behind.resolve(proxy, &headers(&["203.0.113.7"])),
            ip("203.0.113.7")
        );
        // A client-supplied entry to the left is not believed; two proxies are skipped.
        assert_eq!(
            behind.resolve(proxy, &headers(&["1.1.1.1, 203.0.113.7, 10.9.9.9"])),
            ip("203.0.113.7")
        );
        assert_eq!(
            behind.resolve(proxy, &headers(&["1.1.1.1", "203.0.113.7"])),
            ip("203.0.113.7")
        );
        // No header, or garbage: the proxy itself.
        assert_eq!(behind.resolve(proxy, &HeaderMap::new()), proxy);
        assert_eq!(behind.resolve(proxy, &headers(&["nonsense"])), proxy);
        // Not from a trusted proxy: the header is ignored.
        let stranger = ip("198.51.100.1");
        assert_eq!(
            behind.resolve(stranger, &headers(&["203.0.113.7"])),
            stranger
        );
        assert_eq!(
            ClientAddr::default().resolve(proxy, &headers(&["203.0.113.7"])),
            proxy
        );
    }

    #[test]
    fn nets_parse_as_ranges_or_single_addresses() {
        assert!(parse_net("10.0.0.0/8").unwrap().contains(&ip("10.200.0.1")));
        assert!(parse_net("fd00::/8").unwrap().contains(&ip("fd12::1")));
        assert_eq!(parse_net("127.0.0.1").unwrap().prefix_len(), 32);
        assert!(parse_net("10.0.0.0/33").is_err());
        assert!(parse_net("proxy").is_err());
    }
}
