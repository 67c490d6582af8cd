//! `clawn device move`: the same key on a node of another region, and why a move was refused.

use clawn_proto::api::{DeviceView, ErrorCode, ReassignDeviceRequest};
use clawn_proto::time::now_millis;
use reqwest::StatusCode;

use super::config::render_with_stored_key;
use super::{Context, default_conf_path, find_active};
use crate::cli::ConfigOutput;
use crate::client::ClientError;
use crate::error::CliError;
use crate::output::device::{moved_summary, say, write_config};
use crate::output::{emit_qr, warn};
use crate::time::{format_duration_secs, format_utc};

/// `clawn device move`.
pub(super) async fn move_region(
    ctx: &Context,
    query: &str,
    region: &str,
    output: ConfigOutput,
) -> Result<(), CliError> {
    let client = ctx.client()?;
    let device = find_active(&client, query, "add a new device instead").await?;
    let region = region.trim();
    // Refused moves count towards the server's abuse signals too: do not ask for the
    // ones that cannot succeed.
    if device.region == region {
        return Err(same_region(&device));
    }
    if device.quarantined {
        return Err(quarantined(&device));
    }
    let moved = client
        .move_device(
            device.id,
            &ReassignDeviceRequest {
                region: region.to_string(),
            },
        )
        .await
        .map_err(|e| move_failed(e, &device, region))?;
    let d = &moved.device;
    let (text, complete) = render_with_stored_key(ctx, d, &moved.config)?;
    let out = output.out.unwrap_or_else(|| default_conf_path(&d.name));
    write_config(&out, &text).map_err(|e| {
        e.after(format!(
            "the device was moved to region {}; write its new config with `clawn device config {} --out FILE`",
            d.region, d.id
        ))
    })?;
    say(&out, &moved_summary(&device, &moved, complete, &out))?;
    if output.qr {
        if complete {
            emit_qr(&text)?;
        } else {
            warn("no QR code: a config without its private key cannot be imported");
        }
    }
    Ok(())
}

fn same_region(device: &DeviceView) -> CliError {
    CliError::input_with_hint(
        format!(
            "device {} is already in region {} (same_region)",
            device.name, device.region
        ),
        "choose another region; `clawn regions` lists them",
    )
}

fn quarantined(device: &DeviceView) -> CliError {
    CliError::input_with_hint(
        format!(
            "device {} is quarantined: region moves are blocked (device_quarantined)",
            device.name
        ),
        "an admin reviews quarantined devices and can release it with `clawn admin device release`; ask yours",
    )
}

/// The region move was refused: say why in terms of this device and what to do.
fn move_failed(e: ClientError, device: &DeviceView, region: &str) -> CliError {
    let ClientError::Api {
        status,
        error,
        retry_after,
    } = &e
    else {
        return e.into();
    };
    match error.code {
        ErrorCode::ReassignRateLimited => {
            let mut hint = "try again later".to_string();
            if let Some(secs) = *retry_after {
                let at = now_millis().saturating_add(i64::try_from(secs).unwrap_or(0) * 1000);
                hint = format!(
                    "try again in {} (after {} UTC)",
                    format_duration_secs(secs),
                    format_utc(at)
                );
            }
            CliError::input_with_hint(
                format!(
                    "device {} cannot move region again yet: {} (reassign_rate_limited)",
                    device.name, error.message
                ),
                hint,
            )
        }
        ErrorCode::DeviceQuarantined => quarantined(device),
        ErrorCode::SameRegion => same_region(device),
        // The device was found (in the caller's own list) just before, and devices are never
        // deleted, only revoked: a 404 from the move is about the region.
        ErrorCode::NotFound if *status == StatusCode::NOT_FOUND => CliError::input_with_hint(
            format!("there is no region {region:?} (not_found)"),
            "`clawn regions` lists the regions",
        ),
        _ => e.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::sample_device;

    #[test]
    fn the_wait_comes_from_retry_after_not_the_hint() {
        let limited = |hint: &str, retry_after| ClientError::Api {
            status: StatusCode::TOO_MANY_REQUESTS,
            error: clawn_proto::api::ApiError {
                code: ErrorCode::ReassignRateLimited,
                message: "a device may move region at most 3 times per hour".into(),
                hint: Some(hint.into()),
            },
            retry_after,
        };
        let d = sample_device();
        let with_header = move_failed(limited("soon", Some(42)), &d, "sg").report();
        assert!(
            with_header.contains("\nhint: try again in 42s (after "),
            "{with_header}"
        );
        // The server's hint is prose for people; without the header the CLI does not guess.
        let without = move_failed(limited("try again in 42 s", None), &d, "sg").report();
        assert!(without.ends_with("\nhint: try again later"), "{without}");
    }

    #[test]
    fn refused_moves_read_in_terms_of_the_device() {
        let d = sample_device();
        let api = |status, code: ErrorCode, message: &str, hint: Option<&str>, retry_after| {
            ClientError::Api {
                status,
                error: clawn_proto::api::ApiError {
                    code,
                    message: message.into(),
                    hint: hint.map(str::to_string),
                },
                retry_after,
            }
        };
        let e = move_failed(
            api(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::ReassignRateLimited,
                "a device may move region at most 3 times per hour",
                Some("try again in 3599 s"),
                Some(3599),
            ),
            &d,
            "sg",
        );
        let report = e.report();
        assert!(
            report.starts_with("error: device laptop cannot move region again yet: a device may move region at most 3 times per hour (reassign_rate_limited)\nhint: try again in 59m59s (after "),
            "{report}"
        );
        let e = move_failed(
            api(
                StatusCode::CONFLICT,
                ErrorCode::DeviceQuarantined,
                "q",
                None,
                None,
            ),
            &d,
            "sg",
        );
        assert!(
            e.report().contains("laptop is quarantined"),
            "{}",
            e.report()
        );
        let e = move_failed(
            api(
                StatusCode::NOT_FOUND,
                ErrorCode::NotFound,
                "region not found",
                None,
                None,
            ),
            &d,
            "xx",
        );
        assert!(e.report().contains("no region \"xx\""), "{}", e.report());
        // Decided by the code, not by the wording of the message.
        let e = move_failed(
            api(
                StatusCode::NOT_FOUND,
                ErrorCode::NotFound,
                "gone",
                None,
                None,
            ),
            &d,
            "xx",
        );
        assert!(e.report().contains("no region \"xx\""), "{}", e.report());
        let e = move_failed(
            api(
                StatusCode::CONFLICT,
                ErrorCode::Unknown,
                "region",
                None,
                None,
            ),
            &d,
            "xx",
        );
        assert_eq!(e.report(), "error: region (unknown)");
        let e = move_failed(
            api(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::NoCapacity,
                "no node in region sg can take a new device right now",
                Some("try another region or try again later"),
                None,
            ),
            &d,
            "sg",
        );
        assert!(
            e.report()
                .contains("(no_capacity)\nhint: try another region"),
            "{}",
            e.report()
        );
    }
}
