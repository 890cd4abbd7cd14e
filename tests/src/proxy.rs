//! A TCP proxy in front of the test API server that a test can cut, to take the API
//! server away from one host while others keep it.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// Forwards connections to one address until cut.
pub struct CuttableProxy {
    addr: SocketAddr,
    cut: CancellationToken,
}

impl Drop for CuttableProxy {
    fn drop(&mut self) {
        self.cut.cancel();
    }
}

impl CuttableProxy {
    /// Listens on a free local port and forwards every connection to `target`.
    pub async fn start(target: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let cut = CancellationToken::new();
        tokio::spawn(serve(listener, target, cut.clone()));
        Ok(Self { addr, cut })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes every connection through it and refuses new ones.
    pub fn cut(&self) {
        self.cut.cancel();
    }
}

async fn serve(listener: TcpListener, target: SocketAddr, cut: CancellationToken) {
    loop {
        let mut inbound = tokio::select! {
            // Returning drops the listener: new connections are refused.
            () = cut.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((inbound, _)) => inbound,
                Err(_) => continue,
            },
        };
        let cut = cut.clone();
        tokio::spawn(async move {
            let Ok(mut outbound) = TcpStream::connect(target).await else {
                return;
            };
            tokio::select! {
                () = cut.cancelled() => {}
                _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
            }
        });
    }
}
