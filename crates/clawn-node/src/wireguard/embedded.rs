//! Embedded userspace WireGuard: boringtun's device on a TUN interface, driven through
//! the same UAPI codec as any other userspace implementation, but over a private
//! socketpair instead of `/var/run/wireguard/<if>.sock`. That keeps parallel nodes on one
//! host apart, and keeps boringtun from installing its own SIGINT/SIGTERM handling.
//!
//! Dropping the backend closes our end of the socketpair; boringtun takes the EOF as
//! "exit", and the holder thread then drops the device, which removes the TUN interface.

use std::os::fd::IntoRawFd as _;
use std::sync::mpsc;

use boringtun::device::{DeviceConfig, DeviceHandle};

use super::uapi::{HandshakeDialect, UapiConn};
use super::{IfaceConfig, WgError};

/// The embedded backend.
pub struct EmbeddedBackend {
    /// The UAPI connection to the device (dropped first: that stops the device).
    pub conn: UapiConn<tokio::net::UnixStream>,
    _holder: mpsc::Sender<()>,
}

/// Worker threads for the device's event loop.
const THREADS: usize = 2;

impl EmbeddedBackend {
    /// Creates the TUN interface and the device, then sets key and port.
    pub async fn open(cfg: &IfaceConfig) -> Result<Self, WgError> {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
        let name = cfg.name.clone();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        // The device handle lives on its own thread for its whole life: it is created with
        // blocking calls and owns OS threads, and the agent's tasks never touch it.
        std::thread::Builder::new()
            .name(format!("wg-{name}"))
            .spawn(move || {
                let config = DeviceConfig {
                    n_threads: THREADS,
                    use_connected_socket: true,
                    use_multi_queue: true,
                    uapi_fd: theirs.into_raw_fd(),
                };
                match DeviceHandle::new(&name, config) {
                    Ok(handle) => {
                        let _ = ready_tx.send(Ok(()));
                        // Blocks until the backend is dropped (the sender goes away).
                        let _ = stop_rx.recv();
                        drop(handle);
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("{e:?}")));
                    }
                }
            })?;
        match ready_rx.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                return Err(WgError::Setup(format!(
                    "cannot create TUN interface {}: {e} (needs CAP_NET_ADMIN and /dev/net/tun)",
                    cfg.name
                )));
            }
            Err(_) => return Err(WgError::Setup("embedded device thread died".into())),
        }
        ours.set_nonblocking(true)?;
        let stream = tokio::net::UnixStream::from_std(ours)?;
        let mut conn = UapiConn::new(stream, HandshakeDialect::Elapsed);
        conn.init(cfg).await?;
        Ok(Self {
            conn,
            _holder: stop_tx,
        })
    }
}
