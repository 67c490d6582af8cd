//! The cross-platform WireGuard UAPI (`get=1` / `set=1` over a unix socket), as spoken by
//! wireguard-go and boringtun.
//!
//! Every value written comes from a parsed type ([`WgPublicKey`], [`Ipv4Net`], `u16`), so
//! nothing that reached the node from the network can inject a line. Two traps, both
//! covered by tests below: wireguard-go answers with *negative* errno values, and
//! boringtun does not reset a peer section's flags when the next `public_key=` starts, so a
//! `remove=true` would leak into every later peer of the same command — removals and
//! upserts therefore always travel in separate commands.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clawn_proto::keys::WgPublicKey;
use clawn_proto::time::{UnixMillis, now_millis};
use ipnet::Ipv4Net;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

use super::{IfaceConfig, Ops, PeerState, WgError};

/// How `last_handshake_time_sec` is meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeDialect {
    /// Seconds since the Unix epoch (wireguard-go, the kernel).
    Absolute,
    /// Seconds since the handshake (upstream boringtun, which also sends `own_public_key`).
    Elapsed,
}

/// `set=1` commands for a plan: one for removals, one for upserts (never mixed).
pub fn encode_set(ops: &Ops) -> Vec<String> {
    let mut cmds = Vec::new();
    if !ops.remove.is_empty() {
        let mut s = String::with_capacity(16 + ops.remove.len() * 90);
        s.push_str("set=1\n");
        for k in &ops.remove {
            let _ = write!(s, "public_key={}\nremove=true\n", k.to_hex());
        }
        s.push('\n');
        cmds.push(s);
    }
    if !ops.upsert.is_empty() {
        let mut s = String::with_capacity(16 + ops.upsert.len() * 120);
        s.push_str("set=1\n");
        for (k, ips) in &ops.upsert {
            let _ = write!(s, "public_key={}\nreplace_allowed_ips=true\n", k.to_hex());
            for ip in ips {
                let _ = writeln!(s, "allowed_ip={ip}");
            }
        }
        s.push('\n');
        cmds.push(s);
    }
    cmds
}

/// The `set=1` command that gives an interface its key and port.
pub fn encode_init(cfg: &IfaceConfig) -> String {
    format!(
        "set=1\nprivate_key={}\nlisten_port={}\n\n",
        cfg.key.private_hex(),
        cfg.listen_port
    )
}

/// Parses the body of a `get=1` answer (the lines before `errno=`).
pub fn parse_get(
    lines: &[String],
    dialect: HandshakeDialect,
    now: UnixMillis,
) -> Result<Vec<PeerState>, WgError> {
    let mut peers: Vec<PeerState> = Vec::new();
    let mut hs_sec: Option<i64> = None;
    let mut hs_nsec: i64 = 0;
    let finish = |peers: &mut Vec<PeerState>, sec: Option<i64>, nsec: i64| {
        if let (Some(p), Some(sec)) = (peers.last_mut(), sec) {
            p.last_handshake = handshake_millis(dialect, sec, nsec, now);
        }
    };
    for line in lines {
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| WgError::Protocol(format!("line without '=': {line:?}")))?;
        let bad = |what: &str| WgError::Protocol(format!("bad {what}: {value:?}"));
        match key {
            "public_key" => {
                finish(&mut peers, hs_sec.take(), hs_nsec);
                hs_nsec = 0;
                let bytes = hex::decode(value).map_err(|_| bad("public_key"))?;
                let arr = <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| bad("public_key"))?;
                // A peer the implementation has is reported even if its key is odd: the
                // reconciler must be able to remove it.
                let public_key = WgPublicKey::from_bytes_unchecked(arr);
                peers.push(PeerState {
                    public_key,
                    allowed_ips: vec![],
                    endpoint: None,
                    last_handshake: None,
                    rx_bytes: 0,
                    tx_bytes: 0,
                });
            }
            _ if peers.is_empty() => {} // interface-level keys
            "allowed_ip" => {
                // IPv6 allowed IPs are not ours; keep IPv4 only.
                if let Ok(net) = value.parse::<Ipv4Net>() {
                    if let Some(p) = peers.last_mut() {
                        p.allowed_ips.push(net);
                    }
                } else if value.parse::<ipnet::IpNet>().is_err() {
                    return Err(bad("allowed_ip"));
                }
            }
            "endpoint" => {
                if let Some(p) = peers.last_mut() {
                    p.endpoint = value.parse().ok();
                }
            }
            "last_handshake_time_sec" => {
                hs_sec = Some(value.parse().map_err(|_| bad("handshake"))?);
            }
            "last_handshake_time_nsec" => {
                hs_nsec = value.parse().map_err(|_| bad("handshake"))?;
            }
            "rx_bytes" => {
                if let Some(p) = peers.last_mut() {
                    p.rx_bytes = value.parse().map_err(|_| bad("rx_bytes"))?;
                }
            }
            "tx_bytes" => {
                if let Some(p) = peers.last_mut() {
                    p.tx_bytes = value.parse().map_err(|_| bad("tx_bytes"))?;
                }
            }
            _ => {}
        }
    }
    finish(&mut peers, hs_sec.take(), hs_nsec);
    Ok(peers)
}

fn handshake_millis(
    dialect: HandshakeDialect,
    sec: i64,
    nsec: i64,
    now: UnixMillis,
) -> Option<UnixMillis> {
    let ms = sec.saturating_mul(1000).saturating_add(nsec / 1_000_000);
    match dialect {
        HandshakeDialect::Absolute if sec == 0 && nsec == 0 => None,
        HandshakeDialect::Absolute => Some(ms),
        HandshakeDialect::Elapsed => Some(now.saturating_sub(ms)),
    }
}

/// The longest a UAPI request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// A UAPI connection over any byte stream (a unix socket or the embedded socketpair).
pub struct UapiConn<S> {
    io: BufReader<S>,
    dialect: HandshakeDialect,
}

impl<S: AsyncRead + AsyncWrite + Unpin> UapiConn<S> {
    /// Wraps a connected stream.
    pub fn new(stream: S, dialect: HandshakeDialect) -> Self {
        Self {
            io: BufReader::with_capacity(64 * 1024, stream),
            dialect,
        }
    }

    /// Sends one command and reads the answer up to (and including) `errno=N` and its
    /// blank line. Returns the lines before `errno`.
    async fn request(&mut self, cmd: &str) -> Result<Vec<String>, WgError> {
        // A hung implementation must not freeze the agent (fail-closed, shutdown): bound
        // every request. A 100k-peer `set` takes about 10 s on these machines.
        tokio::time::timeout(REQUEST_TIMEOUT, self.request_inner(cmd))
            .await
            .map_err(|_| WgError::Protocol(format!("no answer within {REQUEST_TIMEOUT:?}")))?
    }

    async fn request_inner(&mut self, cmd: &str) -> Result<Vec<String>, WgError> {
        self.io.get_mut().write_all(cmd.as_bytes()).await?;
        self.io.get_mut().flush().await?;
        let mut lines = Vec::new();
        let mut line = String::new();
        loop {
            line.clear();
            let n = self.io.read_line(&mut line).await?;
            if n == 0 {
                return Err(WgError::Protocol("connection closed mid-answer".into()));
            }
            let l = line.trim_end_matches('\n');
            if let Some(code) = l.strip_prefix("errno=") {
                let code: i64 = code
                    .parse()
                    .map_err(|_| WgError::Protocol(format!("bad errno line {l:?}")))?;
                // The blank line that ends the answer.
                line.clear();
                self.io.read_line(&mut line).await?;
                return if code == 0 {
                    Ok(lines)
                } else {
                    Err(WgError::Errno(code))
                };
            }
            if l.is_empty() {
                continue;
            }
            if l.starts_with("own_public_key=") {
                self.dialect = HandshakeDialect::Elapsed;
            }
            lines.push(l.to_string());
        }
    }

    /// Sends a raw command (benchmarks compare against it); returns the answer's lines.
    pub async fn raw(&mut self, cmd: &str) -> Result<Vec<String>, WgError> {
        self.request(cmd).await
    }

    /// Sets key and port.
    pub async fn init(&mut self, cfg: &IfaceConfig) -> Result<(), WgError> {
        self.request(&encode_init(cfg)).await.map(|_| ())
    }

    /// Reads the peers.
    pub async fn read(&mut self) -> Result<Vec<PeerState>, WgError> {
        let lines = self.request("get=1\n\n").await?;
        parse_get(&lines, self.dialect, now_millis())
    }

    /// Applies a plan.
    pub async fn apply(&mut self, ops: &Ops) -> Result<(), WgError> {
        for cmd in encode_set(ops) {
            self.request(&cmd).await?;
        }
        Ok(())
    }
}

/// Where userspace implementations put their sockets.
pub const SOCKET_DIR: &str = "/var/run/wireguard";

/// The UAPI backend: a userspace implementation's socket at `/var/run/wireguard/<if>.sock`.
///
/// After a failed request the connection is dropped and the next request opens a new one:
/// wireguard-go stops reading a `set` at its first error and takes the rest of the
/// command for new operations, so the old connection cannot be trusted any more.
pub struct UapiBackend {
    conn: Option<UapiConn<tokio::net::UnixStream>>,
    path: PathBuf,
    child: Option<tokio::process::Child>,
}

impl UapiBackend {
    /// Connects to the interface's socket, starting the userspace implementation first if
    /// the socket is absent and one is configured; then sets key and port.
    pub async fn open(cfg: &IfaceConfig) -> Result<Self, WgError> {
        let path = socket_path(&cfg.name);
        let mut child = None;
        let stream = match tokio::net::UnixStream::connect(&path).await {
            Ok(s) => s,
            Err(e) => {
                let Some(bin) = &cfg.userspace_bin else {
                    return Err(WgError::Setup(format!(
                        "no UAPI socket at {} ({e}); start a userspace WireGuard for {} \
                         (e.g. `wireguard-go {}`) or pass --userspace-bin",
                        path.display(),
                        cfg.name,
                        cfg.name
                    )));
                };
                // Fixed argv: the binary the operator configured, `-f` and a validated name.
                let c = tokio::process::Command::new(bin)
                    .arg("-f")
                    .arg(&cfg.name)
                    .env("WG_PROCESS_FOREGROUND", "1")
                    .stdin(std::process::Stdio::null())
                    .kill_on_drop(true)
                    .spawn()
                    .map_err(|e| WgError::Setup(format!("cannot start {}: {e}", bin.display())))?;
                child = Some(c);
                connect_when_ready(&path, Duration::from_secs(10)).await?
            }
        };
        let mut conn = UapiConn::new(stream, HandshakeDialect::Absolute);
        conn.init(cfg).await?;
        Ok(Self {
            conn: Some(conn),
            path,
            child,
        })
    }

    async fn conn(&mut self) -> Result<&mut UapiConn<tokio::net::UnixStream>, WgError> {
        if self.conn.is_none() {
            let stream = tokio::net::UnixStream::connect(&self.path).await?;
            self.conn = Some(UapiConn::new(stream, HandshakeDialect::Absolute));
        }
        self.conn
            .as_mut()
            .ok_or_else(|| WgError::Protocol("no UAPI connection".into()))
    }

    /// Reads the peers.
    pub async fn read(&mut self) -> Result<Vec<PeerState>, WgError> {
        let r = self.conn().await?.read().await;
        if r.is_err() {
            self.conn = None;
        }
        r
    }

    /// Applies a plan.
    pub async fn apply(&mut self, ops: &Ops) -> Result<(), WgError> {
        let r = self.conn().await?.apply(ops).await;
        if r.is_err() {
            self.conn = None;
        }
        r
    }

    /// The PID of the implementation this backend started, if any.
    pub fn child_pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(|c| c.id())
    }
}

/// `/var/run/wireguard/<name>.sock`.
pub fn socket_path(name: &str) -> PathBuf {
    Path::new(SOCKET_DIR).join(format!("{name}.sock"))
}

async fn connect_when_ready(
    path: &Path,
    limit: Duration,
) -> Result<tokio::net::UnixStream, WgError> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut last = None;
    while tokio::time::Instant::now() < deadline {
        match tokio::net::UnixStream::connect(path).await {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
        // Poll interval while the implementation creates its socket (bounded above).
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(WgError::Setup(format!(
        "UAPI socket {} did not appear within {limit:?}: {last:?}",
        path.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clawn_proto::keys::WgKeyPair;

    fn key(b: u8) -> WgPublicKey {
        WgKeyPair::from_private_base64(&base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            [b; 32],
        ))
        .expect("key")
        .public()
    }

    #[test]
    fn set_commands_never_mix_removals_and_upserts() {
        let ops = Ops {
            remove: vec![key(1)],
            upsert: vec![(key(2), vec!["10.0.0.2/32".parse().expect("net")])],
        };
        let cmds = encode_set(&ops);
        assert_eq!(cmds.len(), 2);
        assert_eq!(
            cmds[0],
            format!("set=1\npublic_key={}\nremove=true\n\n", key(1).to_hex())
        );
        assert_eq!(
            cmds[1],
            format!(
                "set=1\npublic_key={}\nreplace_allowed_ips=true\nallowed_ip=10.0.0.2/32\n\n",
                key(2).to_hex()
            )
        );
        assert!(!cmds[1].contains("remove"));
        assert!(encode_set(&Ops::default()).is_empty());
    }

    #[test]
    fn parses_wireguard_go_get() {
        let k = key(3);
        let text = format!(
            "private_key=abcd\nlisten_port=51820\npublic_key={}\nendpoint=10.200.0.21:40000\n\
             last_handshake_time_sec=1700000000\nlast_handshake_time_nsec=5000000\n\
             tx_bytes=10\nrx_bytes=20\npersistent_keepalive_interval=0\n\
             allowed_ip=10.100.0.2/32\nallowed_ip=fd00::2/128\n\
             public_key={}\nlast_handshake_time_sec=0\nlast_handshake_time_nsec=0\n\
             allowed_ip=10.100.0.3/32\nprotocol_version=1",
            k.to_hex(),
            key(4).to_hex()
        );
        let lines: Vec<String> = text.lines().map(String::from).collect();
        let peers = parse_get(&lines, HandshakeDialect::Absolute, 0).expect("parse");
        assert_eq!(peers.len(), 2);
        assert_eq!(peers[0].public_key, k);
        assert_eq!(
            peers[0].allowed_ips,
            vec!["10.100.0.2/32".parse().expect("n")]
        );
        assert_eq!(
            peers[0].endpoint,
            Some("10.200.0.21:40000".parse().expect("a"))
        );
        assert_eq!(peers[0].last_handshake, Some(1_700_000_000_005));
        assert_eq!((peers[0].rx_bytes, peers[0].tx_bytes), (20, 10));
        assert_eq!(peers[1].last_handshake, None);
    }

    #[test]
    fn parses_boringtun_elapsed_handshakes() {
        let text = format!(
            "own_public_key=00\nlisten_port=1\npublic_key={}\nlast_handshake_time_sec=3\n\
             last_handshake_time_nsec=0\nrx_bytes=1\ntx_bytes=2",
            key(5).to_hex()
        );
        let lines: Vec<String> = text.lines().map(String::from).collect();
        let peers = parse_get(&lines, HandshakeDialect::Elapsed, 10_000).expect("parse");
        assert_eq!(peers[0].last_handshake, Some(7_000));
    }

    #[test]
    fn rejects_garbage() {
        let lines = vec!["public_key=zz".to_string()];
        assert!(parse_get(&lines, HandshakeDialect::Absolute, 0).is_err());
        let lines = vec!["no equals".to_string()];
        assert!(parse_get(&lines, HandshakeDialect::Absolute, 0).is_err());
    }

    #[tokio::test]
    async fn a_failed_request_reconnects_before_the_next() {
        let dir = std::env::temp_dir().join(format!("clawn-uapi-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("wg.sock");
        let _ = std::fs::remove_file(&path);
        let listener = tokio::net::UnixListener::bind(&path).expect("bind");
        let server = tokio::spawn(async move {
            let mut connections = 0;
            for answer in ["errno=-22\n\n", "errno=0\n\n"] {
                let (s, _) = listener.accept().await.expect("accept");
                connections += 1;
                let mut r = BufReader::new(s);
                let mut line = String::new();
                loop {
                    line.clear();
                    if r.read_line(&mut line).await.expect("read") == 0 || line == "\n" {
                        break;
                    }
                }
                r.get_mut()
                    .write_all(answer.as_bytes())
                    .await
                    .expect("write");
                // A connection after an error is not used again: the next request must
                // come on a new one (this one stays open but silent).
                std::mem::forget(r);
            }
            connections
        });
        let mut b = UapiBackend {
            conn: None,
            path: path.clone(),
            child: None,
        };
        let ops = Ops {
            remove: vec![key(1)],
            upsert: vec![],
        };
        assert!(matches!(b.apply(&ops).await, Err(WgError::Errno(-22))));
        let again = tokio::time::timeout(Duration::from_secs(5), b.read())
            .await
            .expect("the request after an error hung on the old connection");
        assert_eq!(again.expect("read on a new connection"), vec![]);
        assert_eq!(server.await.expect("server"), 2);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn negative_errno_is_an_error_and_the_connection_stays_usable() {
        let (a, b) = tokio::net::UnixStream::pair().expect("pair");
        let server = tokio::spawn(async move {
            let mut r = BufReader::new(b);
            let mut answers = vec!["errno=-22\n\n", "public_key=00\nerrno=0\n\n"].into_iter();
            let mut line = String::new();
            let mut seen = Vec::new();
            while let Ok(n) = r.read_line(&mut line).await {
                if n == 0 {
                    break;
                }
                if line == "\n" {
                    let Some(ans) = answers.next() else { break };
                    r.get_mut().write_all(ans.as_bytes()).await.expect("write");
                }
                seen.push(std::mem::take(&mut line));
            }
            seen
        });
        let mut conn = UapiConn::new(a, HandshakeDialect::Absolute);
        let err = conn.request("set=1\nlisten_port=1\n\n").await;
        assert!(matches!(err, Err(WgError::Errno(-22))), "{err:?}");
        let ok = conn.request("get=1\n\n").await.expect("second request");
        assert_eq!(ok, vec!["public_key=00".to_string()]);
        drop(conn);
        let seen = server.await.expect("server");
        assert_eq!(seen[0], "set=1\n");
    }
}
