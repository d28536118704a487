//! Network reach. The only addresses ever used are 192.0.2.1 (TEST-NET-1,
//! RFC 5737, reserved for documentation) and 127.0.0.1 at the one port the
//! harness names. UDP connect() only picks a route and sends nothing; the
//! raw, packet and netlink sockets are opened and closed without I/O (the
//! packet socket with protocol 0, so it is bound to no traffic at all).

use crate::outcome::{io_res, Outcome};
use nix::sys::socket::{socket, AddressFamily, SockFlag, SockProtocol, SockType};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

const TEST_NET_1: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const DISCARD_PORT: u16 = 9;

pub fn udp_route() -> Outcome {
    let sock = match io_res(UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))) {
        Ok(s) => s,
        Err(e) => return Outcome::refused(e, format!("UDP socket/bind failed: {}", e.desc())),
    };
    match io_res(sock.connect((TEST_NET_1, DISCARD_PORT))) {
        Ok(()) => Outcome::escaped(format!(
            "UDP connect to {TEST_NET_1}:{DISCARD_PORT} found a route (local address {}); nothing was sent",
            sock.local_addr().map_or_else(|_| "?".to_owned(), |a| a.to_string())
        )),
        Err(e) => Outcome::refused(e, format!("UDP connect to {TEST_NET_1}:{DISCARD_PORT} failed: {}", e.desc())),
    }
}

pub fn tcp_loopback_host(port: u16) -> Outcome {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let result = io_res(TcpStream::connect_timeout(&addr, Duration::from_secs(3)));
    Outcome::attempt(result, &format!("TCP connect to {addr}"))
}

fn open_socket(family: AddressFamily, ty: SockType, proto: Option<SockProtocol>, what: &str) -> Outcome {
    Outcome::attempt(socket(family, ty, SockFlag::SOCK_CLOEXEC, proto), what)
}

pub fn raw_socket() -> Outcome {
    open_socket(AddressFamily::Inet, SockType::Raw, Some(SockProtocol::Icmp), "socket(AF_INET, SOCK_RAW, IPPROTO_ICMP)")
}

pub fn packet_socket() -> Outcome {
    open_socket(AddressFamily::Packet, SockType::Raw, None, "socket(AF_PACKET, SOCK_RAW, 0)")
}

pub fn netlink_socket() -> Outcome {
    open_socket(
        AddressFamily::Netlink,
        SockType::Raw,
        Some(SockProtocol::NetlinkRoute),
        "socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE)",
    )
}
