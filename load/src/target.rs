//! Targets: `http://HOST:PORT` (or `ws://`) addresses of Socket.IO servers.
//! Only addresses on this machine are accepted: the loopback range
//! 127.0.0.0/8, `::1` and `localhost`. Anything else is refused up front.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use anyhow::{Context, bail};

/// One server to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub addr: SocketAddr,
    /// The WebSocket URL of the Engine.IO endpoint.
    pub ws_url: String,
}

/// Parses `http://127.0.0.1:3000`, `ws://localhost:3000/` or `127.0.0.1:3000`,
/// refusing every address that is not on this machine's loopback interface.
pub fn parse(url: &str) -> anyhow::Result<Target> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("ws://"))
        .unwrap_or(url);
    if rest.contains("://") {
        bail!("{url}: only http:// and ws:// targets are supported (plain text, loopback)");
    }
    let authority = rest.split('/').next().unwrap_or_default();
    let (host, port) = authority
        .rsplit_once(':')
        .with_context(|| format!("{url}: the target needs a port, e.g. http://127.0.0.1:3000"))?;
    let port: u16 = port
        .parse()
        .with_context(|| format!("{url}: {port:?} is not a port number"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip: IpAddr = if host.eq_ignore_ascii_case("localhost") {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        host.parse().map_err(|_| {
            anyhow::anyhow!(
                "{url}: the target host must be a loopback IP address (127.0.0.0/8 or ::1) or \
                 localhost; host names are not resolved"
            )
        })?
    };
    if !ip.is_loopback() {
        bail!(
            "refusing target {url}: {ip} is not a loopback address. chatscale-load only ever \
             sends traffic to this machine (127.0.0.0/8, ::1, localhost)"
        );
    }
    let addr = SocketAddr::new(ip, port);
    Ok(Target {
        addr,
        ws_url: format!("ws://{addr}/socket.io/?EIO=4&transport=websocket"),
    })
}

/// The `index`-th local source address (127.0.0.1, 127.0.0.2, ...), so that
/// many connections do not run out of ephemeral ports on one address.
pub fn source_ip(index: usize, count: usize) -> IpAddr {
    let n = (index % count.max(1)) as u32 + 1;
    IpAddr::V4(Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 0, 0, 0)) + n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_targets_are_accepted() {
        let t = parse("http://127.0.0.1:3000").unwrap();
        assert_eq!(t.addr, "127.0.0.1:3000".parse().unwrap());
        assert_eq!(
            t.ws_url,
            "ws://127.0.0.1:3000/socket.io/?EIO=4&transport=websocket"
        );
        assert_eq!(
            parse("ws://localhost:80/").unwrap().addr.ip(),
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        );
        assert!(parse("127.0.0.9:1").is_ok());
        assert!(parse("http://[::1]:3000").is_ok());
    }

    #[test]
    fn other_addresses_are_refused() {
        for url in [
            "http://10.0.0.1:3000",
            "http://192.168.1.2:3000",
            "http://8.8.8.8:80",
            "http://example.com:80",
            "https://127.0.0.1:3000",
            "http://127.0.0.1",
        ] {
            assert!(parse(url).is_err(), "{url} was accepted");
        }
        let error = parse("http://10.1.2.3:3000").unwrap_err().to_string();
        assert!(error.contains("not a loopback address"), "{error}");
    }

    #[test]
    fn source_addresses_cycle_through_127_0_0_x() {
        assert_eq!(source_ip(0, 4), "127.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(source_ip(5, 4), "127.0.0.2".parse::<IpAddr>().unwrap());
        assert_eq!(source_ip(299, 300), "127.0.1.44".parse::<IpAddr>().unwrap());
    }
}
