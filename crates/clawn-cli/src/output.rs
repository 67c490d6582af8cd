//! How results reach the terminal: aligned tables, JSON, QR codes, and the words for a node's
//! acknowledgement.
//!
//! Results go to stdout (so they can be piped); warnings, progress and prompts go to stderr.
//! A closed pipe (`clawn admin audit | head`) ends output quietly instead of panicking.

use std::io::{self, IsTerminal as _, Write as _};

use clawn_proto::api::{AckStatus, NodeAck};
use qrcode::render::unicode::Dense1x2;
use qrcode::{EcLevel, QrCode};
use serde::Serialize;

use crate::error::CliError;

pub(crate) mod device;

/// Writes `text` and a newline to stdout. A closed pipe is not an error.
pub fn emit(text: &str) -> Result<(), CliError> {
    let mut out = io::stdout().lock();
    let result = out.write_all(text.as_bytes()).and_then(|()| {
        if text.ends_with('\n') {
            Ok(())
        } else {
            out.write_all(b"\n")
        }
    });
    match result.and_then(|()| out.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(CliError::Io {
            what: "cannot write to stdout".into(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// Writes a note for the human (not the pipe) to stderr.
pub fn note(text: &str) {
    let _ = writeln!(io::stderr().lock(), "{text}");
}

/// Writes a warning to stderr.
pub fn warn(text: &str) {
    note(&format!("warning: {text}"));
}

/// Pretty JSON of `value` to stdout.
pub fn emit_json<T: Serialize + ?Sized>(value: &T) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| CliError::input(format!("cannot encode JSON output: {e}")))?;
    emit(&text)
}

/// A table with a header row and left-aligned columns separated by two spaces.
#[derive(Debug, Clone)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles.
    pub fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|h| (*h).to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (missing cells are empty, extra cells are dropped).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The rendered table; trailing spaces are trimmed from every line.
    pub fn render(&self) -> String {
        let cols = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().take(cols).enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::new();
            for (i, width) in widths.iter().enumerate() {
                let cell = row.get(i).map(String::as_str).unwrap_or("");
                line.push_str(cell);
                if i + 1 < cols {
                    line.extend(std::iter::repeat_n(' ', width - cell.chars().count() + 2));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Renders `text` as a QR code of Unicode half blocks (two modules per character cell), with
/// the quiet zone a scanner needs. With `ansi`, each line is wrapped in black-on-white colour
/// codes so the code scans on dark terminal themes too.
pub fn render_qr(text: &str, ansi: bool) -> Result<String, CliError> {
    let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::L)
        .map_err(|e| CliError::input(format!("cannot make a QR code of the config: {e}")))?;
    let plain = code.render::<Dense1x2>().quiet_zone(true).build();
    if !ansi {
        return Ok(plain);
    }
    Ok(plain
        .lines()
        .map(|l| format!("\x1b[30;107m{l}\x1b[0m\n"))
        .collect())
}

/// Prints a QR code of `text` to stdout, coloured when stdout is a terminal.
pub fn emit_qr(text: &str) -> Result<(), CliError> {
    emit(&render_qr(text, io::stdout().is_terminal())?)
}

/// One line saying whether the node applied a change, e.g.
/// `node acknowledged version 12 after 35 ms`.
pub fn describe_ack(ack: &NodeAck) -> String {
    let version = ack
        .version
        .map(|v| format!(" version {v}"))
        .unwrap_or_default();
    match ack.status {
        AckStatus::Acknowledged => format!("node acknowledged{version} after {} ms", ack.waited_ms),
        AckStatus::Timeout => format!(
            "node is connected but did not acknowledge{version} within {} ms; it applies the change when it catches up",
            ack.waited_ms
        ),
        AckStatus::Pending => format!("pushed{version} to the node; it applies it within moments"),
        AckStatus::Offline => format!("node is offline; it applies{version} when it reconnects"),
        AckStatus::None => "no node was involved".to_string(),
        AckStatus::Unknown => format!("node status: {}{version}", ack.status),
    }
}

/// A cell for an optional value.
pub fn or_dash(v: Option<impl ToString>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

/// `1.5 MiB`-style byte counts.
pub fn format_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clawn_proto::WgKeyPair;
    use clawn_proto::config::ConfigTemplate;

    #[test]
    fn tables_align() {
        let mut t = Table::new(&["ID", "NAME", "STATE"]);
        t.row(vec!["1".into(), "laptop".into(), "active".into()]);
        t.row(vec!["22".into(), "ü".into(), "".into()]);
        assert_eq!(t.render(), "ID  NAME    STATE\n1   laptop  active\n22  ü\n");
    }

    /// A device key pair and a full-tunnel config template for it.
    fn sample_config() -> (WgKeyPair, ConfigTemplate) {
        let t = ConfigTemplate {
            address: "10.100.0.2/32".into(),
            dns: vec!["1.1.1.1".into()],
            peer_public_key: WgKeyPair::generate().public(),
            endpoint: "vpn.example.com:51820".into(),
            allowed_ips: vec!["0.0.0.0/0".into(), "::/0".into()],
            persistent_keepalive: 25,
            mtu: None,
        };
        (WgKeyPair::generate(), t)
    }

    #[test]
    fn qr_in_the_terminal_decodes_back_to_the_full_config() {
        let (kp, t) = sample_config();
        let config = t.render(Some(&kp.private_base64()));
        let qr = render_qr(&config, false).expect("qr");
        // Each character is two modules stacked: rebuild the module grid from the blocks.
        let rows: Vec<Vec<char>> = qr.lines().map(|l| l.chars().collect()).collect();
        let width = rows.iter().map(Vec::len).max().unwrap_or(0);
        let height = rows.len() * 2;
        let filled = |x: usize, y: usize| -> bool {
            let c = rows
                .get(y / 2)
                .and_then(|r| r.get(x))
                .copied()
                .unwrap_or(' ');
            matches!((c, y % 2), ('█', _) | ('▀', 0) | ('▄', 1))
        };
        // Decode as drawn (filled = dark) and, if the renderer draws light modules
        // filled, inverted; scale up so the decoder has pixels to work with.
        let scale = 4;
        let decoded = [false, true].into_iter().find_map(|invert| {
            let mut img = rqrr::PreparedImage::prepare_from_greyscale(
                width * scale,
                height * scale,
                |x, y| {
                    let dark = filled(x / scale, y / scale) != invert;
                    if dark { 0 } else { 255 }
                },
            );
            let grids = img.detect_grids();
            grids
                .first()
                .and_then(|g| g.decode().ok())
                .map(|(_, text)| text)
        });
        assert_eq!(
            decoded.as_deref(),
            Some(config.as_str()),
            "the QR code must carry the exact .conf"
        );
    }

    #[test]
    fn qr_of_a_full_config_is_a_square_of_blocks() {
        let (kp, t) = sample_config();
        let qr = render_qr(&t.render(Some(&kp.private_base64())), false).expect("qr");
        let lines: Vec<&str> = qr.lines().collect();
        assert!(lines.len() > 10);
        let width = lines[0].chars().count();
        assert!(lines.iter().all(|l| l.chars().count() == width));
        assert!(qr.contains('█') || qr.contains('▀') || qr.contains('▄'));
        // Two modules per line: height is about half the width.
        assert!(lines.len() * 2 >= width && lines.len() * 2 <= width + 1);

        let coloured = render_qr("hello", true).expect("qr");
        assert!(
            coloured
                .lines()
                .all(|l| l.starts_with("\x1b[30;107m") && l.ends_with("\x1b[0m"))
        );
    }

    #[test]
    fn acks_are_worded() {
        let ack = |status: &str| NodeAck {
            status: AckStatus::parse(status),
            version: Some(7),
            waited_ms: 40,
        };
        assert_eq!(
            describe_ack(&ack("acknowledged")),
            "node acknowledged version 7 after 40 ms"
        );
        assert!(describe_ack(&ack("timeout")).contains("did not acknowledge"));
        assert!(describe_ack(&ack("offline")).contains("offline"));
        assert_eq!(
            describe_ack(&ack("pending")),
            "pushed version 7 to the node; it applies it within moments"
        );
    }

    #[test]
    fn bytes_are_human() {
        assert_eq!(format_bytes(512), "512 B");
        assert_eq!(format_bytes(1536), "1.5 KiB");
        assert_eq!(format_bytes(5 * 1024 * 1024 * 1024), "5.0 GiB");
    }
}
