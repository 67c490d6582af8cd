//! `clawn device config`: the server template completed with the locally stored key.

use clawn_proto::api::DeviceView;
use clawn_proto::config::ConfigTemplate;

use super::{Context, find_active};
use crate::cli::ConfigOutput;
use crate::error::CliError;
use crate::output::device::{is_stdout, missing_key_note, write_config};
use crate::output::{emit, emit_qr, note, warn};
use crate::store::KeyLookup;

/// `clawn device config`.
pub(super) async fn config(
    ctx: &Context,
    query: &str,
    output: ConfigOutput,
) -> Result<(), CliError> {
    let client = ctx.client()?;
    let device = find_active(&client, query, "it has no config").await?;
    let cfg = client.device_config(device.id).await?;
    let (text, complete) = render_with_stored_key(ctx, &device, &cfg.config)?;

    match (&output.out, output.qr) {
        (Some(out), _) => {
            write_config(out, &text)?;
            if !is_stdout(out) {
                note(&format!("wrote {}", out.display()));
            }
        }
        (None, false) => emit(&text)?,
        (None, true) => {}
    }
    if output.qr {
        if complete {
            emit_qr(&text)?;
        } else {
            warn("no QR code: a config without its private key cannot be imported");
        }
    }
    Ok(())
}

/// Completes a config template with the device's private key from the store. Without the key
/// (not on this machine, or an older key pair), warns and leaves the placeholder; the flag
/// says whether the config is complete.
pub(super) fn render_with_stored_key(
    ctx: &Context,
    device: &DeviceView,
    template: &ConfigTemplate,
) -> Result<(String, bool), CliError> {
    Ok(match ctx.store.find_key(device.id, &device.public_key)? {
        KeyLookup::Found(key) => (template.render(Some(&key.private_base64())), true),
        KeyLookup::Stale(path) => {
            warn(&format!(
                "the private key stored at {} belongs to an older key pair of device {} (rotated on another machine?)",
                path.display(),
                device.name
            ));
            missing_key_note(device);
            (template.render(None), false)
        }
        KeyLookup::Missing(path) => {
            warn(&format!(
                "the private key of device {} is not stored on this machine (looked for {})",
                device.name,
                path.display()
            ));
            missing_key_note(device);
            (template.render(None), false)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clawn_proto::WgKeyPair;
    use clawn_proto::config::PRIVATE_KEY_PLACEHOLDER;

    #[test]
    fn stored_key_completes_the_server_template() {
        let t = crate::test_support::TempDir::new("render");
        let store = crate::store::Store::open(Some(t.path().to_path_buf())).expect("store");
        let key = WgKeyPair::generate();
        let id = uuid::Uuid::new_v4();
        let pending = store.stash_new_device_key(&key).expect("stash");
        store.commit_key(&pending, id).expect("commit");

        let template = ConfigTemplate {
            address: "10.100.0.7/32".into(),
            dns: vec!["10.100.0.1".into()],
            peer_public_key: WgKeyPair::generate().public(),
            endpoint: "eu-1.example.com:51820".into(),
            allowed_ips: vec!["0.0.0.0/0".into()],
            persistent_keepalive: 25,
            mtu: Some(1380),
        };
        let KeyLookup::Found(found) = store.find_key(id, &key.public()).expect("find") else {
            panic!("key not found");
        };
        let text = template.render(Some(&found.private_base64()));
        assert!(text.starts_with(&format!(
            "[Interface]\nPrivateKey = {}\n",
            key.private_base64()
        )));
        assert!(!text.contains(PRIVATE_KEY_PLACEHOLDER));
        assert!(text.contains("Endpoint = eu-1.example.com:51820\n"));

        let out = t.path().join("out.conf");
        write_config(&out, &text).expect("write");
        assert_eq!(std::fs::read_to_string(&out).expect("read"), text);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&out).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }
}
