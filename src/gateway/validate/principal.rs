//! Principal management (operator only): checked by the registry itself,
//! which knows which ids exist; here only the shape of the request.

use super::{Action, reject};
use crate::config::{Limits, PRINCIPALS_PER_PAGE_MAX};
use crate::protocol::{ErrorCode, PrincipalAddRequest, PrincipalListRequest};
use crate::router::Command;

pub(super) fn add(body: PrincipalAddRequest) -> Action {
    Action::Route(Command::PrincipalAdd(body))
}

/// A page of principals: at least one, and at most
/// `PRINCIPALS_PER_PAGE_MAX` (a larger ask gets that many, as a report
/// page does); cut to fit this engine's frame.
pub(super) fn list(mut body: PrincipalListRequest, limits: &Limits) -> Action {
    if body.limit == 0 {
        return reject(
            ErrorCode::LimitExceeded,
            "a principal page lists at least one principal".to_string(),
        );
    }
    let most = u32::try_from(PRINCIPALS_PER_PAGE_MAX).unwrap_or(u32::MAX);
    body.limit = body.limit.min(most);
    Action::Route(Command::PrincipalList {
        request: body,
        max_frame_bytes: limits.max_frame_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::{code_of, principals, with_context};
    use super::super::validate;
    use super::*;
    use crate::protocol::Request;

    #[test]
    fn principal_pages_are_capped_and_never_empty() {
        let registry = principals();
        let limits = Limits::default();
        with_context(&limits, |context| {
            let operator = registry.get(0).expect("operator");
            let page = |limit| Request::PrincipalList(PrincipalListRequest { after: None, limit });
            assert_eq!(
                code_of(validate(page(0), &operator, context)),
                Some(ErrorCode::LimitExceeded)
            );
            for (asked, sent) in [(1, 1), (1000, 1000), (u32::MAX, 1000)] {
                match validate(page(asked), &operator, context) {
                    Action::Route(Command::PrincipalList {
                        request,
                        max_frame_bytes,
                    }) => {
                        assert_eq!(request.limit, sent);
                        assert_eq!(max_frame_bytes, limits.max_frame_bytes);
                    }
                    _ => panic!("a page of {asked} is routed"),
                }
            }
            let merchant = registry.get(5).expect("merchant");
            assert_eq!(
                code_of(validate(page(1), &merchant, context)),
                Some(ErrorCode::Forbidden)
            );
        })
    }
}
