//! Operator requests: the report, the audit, stats, and the principals and
//! their HTTP tokens.

use super::{Client, ClientError, REPORT_PAGE_LINES, unexpected};
use crate::auth::Key;
use crate::protocol::{
    AuditResponse, PrincipalAddRequest, PrincipalInfo, PrincipalListRef, PrincipalListRequest,
    PrincipalListResponse, PrincipalRevokeRequest, PrincipalRotateRequest, ReportAccount,
    ReportRequest, ReportResponse, Request, Response, Role, StatsResponse,
};

impl Client {
    /// One page of the report.
    pub async fn report_page(&self, request: ReportRequest) -> Result<ReportResponse, ClientError> {
        match self.call_ok(&Request::Report(request)).await? {
            Response::Report(report) => Ok(report),
            other => Err(unexpected(other)),
        }
    }

    /// The whole report (or one account's line, with `only`), following
    /// the pages; the totals are the last page's.
    pub async fn report_all(
        &self,
        only: Option<ReportAccount>,
        page_lines: u32,
    ) -> Result<ReportResponse, ClientError> {
        let mut all = ReportResponse::default();
        let mut after = None;
        loop {
            let request = ReportRequest {
                limit: page_lines,
                after,
                only,
            };
            let page = self.report_page(request).await?;
            all.stores.extend(page.stores);
            all.merchants.extend(page.merchants);
            all.totals = page.totals;
            match page.next {
                Some(next) if Some(next) != after => after = Some(next),
                _ => return Ok(all),
            }
        }
    }

    /// The whole report, in pages of [`REPORT_PAGE_LINES`].
    pub async fn report(&self) -> Result<ReportResponse, ClientError> {
        self.report_all(None, REPORT_PAGE_LINES).await
    }

    pub async fn audit(&self) -> Result<AuditResponse, ClientError> {
        match self.call_ok(&Request::Audit).await? {
            Response::Audit(audit) => Ok(audit),
            other => Err(unexpected(other)),
        }
    }

    pub async fn stats(&self) -> Result<StatsResponse, ClientError> {
        match self.call_ok(&Request::Stats).await? {
            Response::Stats(stats) => Ok(stats),
            other => Err(unexpected(other)),
        }
    }

    /// Registers the principal of `key` (operator only); only the key's
    /// stored form is sent.
    pub async fn principal_add(
        &self,
        key: &Key,
        role: Role,
        stores: &[u32],
    ) -> Result<PrincipalInfo, ClientError> {
        let request = Request::PrincipalAdd(PrincipalAddRequest {
            id: key.principal,
            role,
            stores: stores.to_vec(),
            stored_key: key.stored_key(),
        });
        match self.call_ok(&request).await? {
            Response::PrincipalAdded(info) => Ok(info),
            other => Err(unexpected(other)),
        }
    }

    /// One page of the principals (operator only), ascending id: after
    /// `after` (`None`: from the start), at most `limit`. The last may be
    /// a store HQ cut short; `next` is where the next page starts.
    pub async fn principal_list_page(
        &self,
        after: Option<PrincipalListRef>,
        limit: u32,
    ) -> Result<PrincipalListResponse, ClientError> {
        let request = Request::PrincipalList(PrincipalListRequest { after, limit });
        match self.call_ok(&request).await? {
            Response::Principals(page) => Ok(page),
            other => Err(unexpected(other)),
        }
    }

    /// Every principal, ascending id, following the pages (a store HQ
    /// split across two is joined).
    pub async fn principal_list(&self) -> Result<Vec<PrincipalInfo>, ClientError> {
        let limit = u32::try_from(crate::config::PRINCIPALS_PER_PAGE_MAX).unwrap_or(u32::MAX);
        let mut all = Vec::new();
        let mut after = None;
        loop {
            let page = self.principal_list_page(after, limit).await?;
            let next = page.next;
            page.append_to(&mut all);
            match next {
                Some(next) if Some(next) != after => after = Some(next),
                _ => return Ok(all),
            }
        }
    }

    /// Gives the principal of `key` this new key (operator only).
    pub async fn principal_rotate(&self, key: &Key) -> Result<PrincipalInfo, ClientError> {
        let request = Request::PrincipalRotate(PrincipalRotateRequest {
            id: key.principal,
            stored_key: key.stored_key(),
        });
        match self.call_ok(&request).await? {
            Response::PrincipalRotated(info) => Ok(info),
            other => Err(unexpected(other)),
        }
    }

    /// Registers the client certificate with SHA-256 `fingerprint` for
    /// store HQ `id` on the ISO 8583 listener (operator only).
    pub async fn principal_cert(
        &self,
        id: u32,
        fingerprint: [u8; 32],
    ) -> Result<crate::protocol::PrincipalCertInfo, ClientError> {
        let request =
            Request::PrincipalCert(crate::protocol::PrincipalCertRequest { id, fingerprint });
        match self.call_ok(&request).await? {
            Response::PrincipalCertRegistered(info) => Ok(info),
            other => Err(unexpected(other)),
        }
    }

    /// Registers an HTTP bearer token for principal `id` by its hash.
    pub async fn token_add(
        &self,
        id: u32,
        hash: [u8; 32],
    ) -> Result<crate::protocol::PrincipalTokens, ClientError> {
        let request = Request::TokenAdd(crate::protocol::TokenAddRequest { id, hash });
        match self.call_ok(&request).await? {
            Response::TokenAdded(tokens) => Ok(tokens),
            other => Err(unexpected(other)),
        }
    }

    /// Principal `id`'s HTTP bearer tokens, by id.
    pub async fn token_list(
        &self,
        id: u32,
    ) -> Result<crate::protocol::PrincipalTokens, ClientError> {
        let request = Request::TokenList(crate::protocol::TokenListRequest { id });
        match self.call_ok(&request).await? {
            Response::Tokens(tokens) => Ok(tokens),
            other => Err(unexpected(other)),
        }
    }

    /// Revokes principal `id`'s HTTP bearer token `token` (its id).
    pub async fn token_revoke(
        &self,
        id: u32,
        token: [u8; 8],
    ) -> Result<crate::protocol::PrincipalTokens, ClientError> {
        let request = Request::TokenRevoke(crate::protocol::TokenRevokeRequest { id, token });
        match self.call_ok(&request).await? {
            Response::TokenRevoked(tokens) => Ok(tokens),
            other => Err(unexpected(other)),
        }
    }

    pub async fn principal_revoke(&self, id: u32) -> Result<PrincipalInfo, ClientError> {
        let request = Request::PrincipalRevoke(PrincipalRevokeRequest { id });
        match self.call_ok(&request).await? {
            Response::PrincipalRevoked(info) => Ok(info),
            other => Err(unexpected(other)),
        }
    }
}
