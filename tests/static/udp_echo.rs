//! A UDP echo server for test containers (busybox has no UDP server): built static
//! by `tests/build.rs` and bind-mounted into a busybox container.
//! Usage: `udp-echo PORT`; answers every datagram with "echo:" + the datagram.

use std::net::UdpSocket;

fn main() {
    let port = std::env::args().nth(1).unwrap_or_else(|| "9999".into());
    let socket = UdpSocket::bind(format!("0.0.0.0:{port}")).expect("bind");
    println!("listening on udp {port}");
    let mut buf = [0u8; 2048];
    loop {
        if let Ok((n, peer)) = socket.recv_from(&mut buf) {
            let mut reply = b"echo:".to_vec();
            reply.extend_from_slice(&buf[..n]);
            let _ = socket.send_to(&reply, peer);
        }
    }
}
