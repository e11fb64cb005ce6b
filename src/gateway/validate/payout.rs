//! Payouts: the operator's requests, checked for shape. Whether the
//! merchant exists, the period and the payout are the router's to check,
//! against the registry and the records.

use super::{Action, reject};
use crate::auth::Principal;
use crate::config::Limits;
use crate::protocol::{
    ErrorCode, PAYOUT_REFERENCE_BYTES_MAX, PayoutConfirmRequest, PayoutCreateRequest,
    PayoutListRequest, PayoutShowRequest,
};
use crate::router::{Command, PayoutCommand};

pub(super) fn create(body: PayoutCreateRequest, principal: &Principal) -> Action {
    Action::Route(Command::Payout {
        operator: principal.id,
        command: PayoutCommand::Create(body),
    })
}

pub(super) fn confirm(body: PayoutConfirmRequest, principal: &Principal) -> Action {
    if body.reference.is_empty() || body.reference.len() > PAYOUT_REFERENCE_BYTES_MAX {
        return reject(
            ErrorCode::InvalidArgument,
            format!("a payout's reference is 1..={PAYOUT_REFERENCE_BYTES_MAX} bytes"),
        );
    }
    Action::Route(Command::Payout {
        operator: principal.id,
        command: PayoutCommand::Confirm(body),
    })
}

/// The most a payout takes on the wire: its id, twelve u64 varints, the
/// fee rate and a confirmation reference of up to 64 bytes; with room.
const PAYOUT_INFO_BYTES_MAX: usize = 256;
/// The most one payout item takes: kind, request id, amount, time.
const PAYOUT_ITEM_BYTES_MAX: usize = 32;

/// A page of at least one line, at most `max_report_lines` and at most
/// what fits a frame of lines `line_bytes` long; `None` for an empty
/// page.
fn page_limit(limit: u32, line_bytes: usize, limits: &Limits) -> Option<u32> {
    let fits = limits
        .max_frame_bytes
        .saturating_sub(crate::config::REPORT_PAGE_FIXED_BYTES + PAYOUT_INFO_BYTES_MAX)
        / line_bytes;
    let most = limits.max_report_lines.min(fits).max(1);
    (limit > 0).then(|| limit.min(u32::try_from(most).unwrap_or(u32::MAX)))
}

fn empty_page() -> Action {
    reject(
        ErrorCode::LimitExceeded,
        "a page has at least one line".to_string(),
    )
}

pub(super) fn list(mut body: PayoutListRequest, principal: &Principal, limits: &Limits) -> Action {
    match page_limit(body.limit, PAYOUT_INFO_BYTES_MAX, limits) {
        Some(limit) => body.limit = limit,
        None => return empty_page(),
    }
    Action::Route(Command::Payout {
        operator: principal.id,
        command: PayoutCommand::List(body),
    })
}

pub(super) fn show(mut body: PayoutShowRequest, principal: &Principal, limits: &Limits) -> Action {
    match page_limit(body.limit, PAYOUT_ITEM_BYTES_MAX, limits) {
        Some(limit) => body.limit = limit,
        None => return empty_page(),
    }
    Action::Route(Command::Payout {
        operator: principal.id,
        command: PayoutCommand::Show(body),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{
        PayoutInfo, PayoutItem, PayoutItemKind, PayoutItemRef, PayoutListResponse,
        PayoutShowResponse, Response,
    };

    fn largest_payout() -> PayoutInfo {
        PayoutInfo {
            merchant_id: u32::MAX,
            seq: u64::MAX,
            from_ms: u64::MAX,
            until_ms: u64::MAX,
            payments: u64::MAX,
            payments_minor: u64::MAX,
            refunds: u64::MAX,
            refunds_minor: u64::MAX,
            fee_bps: u32::MAX,
            fee_minor: u64::MAX,
            carried_in_minor: u64::MAX,
            amount_minor: u64::MAX,
            carried_out_minor: u64::MAX,
            created_at_ms: u64::MAX,
            confirmed_reference: Some("x".repeat(PAYOUT_REFERENCE_BYTES_MAX)),
            confirmed_at_ms: u64::MAX,
        }
    }

    /// Full pages of the largest payouts and items fit their frame, at the
    /// smallest frame and the default one.
    #[test]
    fn full_payout_pages_fit_a_frame() {
        for max_frame_bytes in [1024, 4096, 256 * 1024] {
            let limits = Limits {
                max_frame_bytes,
                ..Limits::default()
            };
            let list = page_limit(u32::MAX, PAYOUT_INFO_BYTES_MAX, &limits).expect("page");
            let page = Response::Payouts(PayoutListResponse {
                payouts: vec![largest_payout(); list as usize],
                next: Some(u64::MAX),
            });
            page.encode(&mut Vec::new(), u64::MAX, max_frame_bytes)
                .expect("a full list page fits");
            let show = page_limit(u32::MAX, PAYOUT_ITEM_BYTES_MAX, &limits).expect("page");
            let item = PayoutItem {
                item: PayoutItemRef {
                    kind: PayoutItemKind::Refund,
                    request_id: u64::MAX,
                },
                amount_minor: u64::MAX,
                at_ms: u64::MAX,
            };
            let page = Response::PayoutItems(PayoutShowResponse {
                payout: largest_payout(),
                items: vec![item; show as usize],
                next: Some(item.item),
            });
            page.encode(&mut Vec::new(), u64::MAX, max_frame_bytes)
                .expect("a full show page fits");
        }
        assert_eq!(page_limit(0, 32, &Limits::default()), None);
    }
}
