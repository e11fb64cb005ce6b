//! The operator's management of principals: straight to the registry,
//! which writes each change durably before answering (a synced commit, so
//! the router runs changes on the blocking pool, `blocking.rs`).

use crate::auth::{Certs, Registry, RegistryError};
use crate::protocol::{
    ErrorCode, PRINCIPAL_PAGE_FIXED_BYTES, PrincipalAddRequest, PrincipalCertInfo,
    PrincipalCertRequest, PrincipalListRequest, PrincipalRotateRequest, Response,
};

pub(super) fn add(registry: &Registry, body: PrincipalAddRequest) -> Response {
    match registry.add(body.id, body.role, body.stores, body.stored_key) {
        Ok(info) => {
            crate::telemetry::principal_changed("add");
            tracing::info!(id = info.id, role = info.role.name(), "principal added");
            Response::PrincipalAdded(info)
        }
        Err(error) => refusal(error),
    }
}

/// A page of principals: its entries get what a frame of
/// `max_frame_bytes` leaves after the page's fixed part, so the page
/// always fits.
pub(super) fn list(
    registry: &Registry,
    request: PrincipalListRequest,
    max_frame_bytes: usize,
) -> Response {
    let limit = request.limit as usize;
    let bytes_max = max_frame_bytes - PRINCIPAL_PAGE_FIXED_BYTES;
    crate::telemetry::principal_list_page();
    Response::Principals(registry.page(request.after, limit, bytes_max))
}

pub(super) fn revoke(registry: &Registry, id: u32) -> Response {
    match registry.revoke(id) {
        Ok(info) => {
            crate::telemetry::principal_changed("revoke");
            tracing::info!(id, "principal revoked");
            Response::PrincipalRevoked(info)
        }
        Err(error) => refusal(error),
    }
}

pub(super) fn rotate(registry: &Registry, body: PrincipalRotateRequest) -> Response {
    match registry.rotate(body.id, body.stored_key) {
        Ok(info) => {
            crate::telemetry::principal_changed("rotate");
            tracing::info!(id = body.id, "principal key rotated");
            Response::PrincipalRotated(info)
        }
        Err(error) => refusal(error),
    }
}

/// Registers a store HQ's client certificate; answers with all of its
/// certificates.
pub(super) fn cert(registry: &Registry, certs: &Certs, body: PrincipalCertRequest) -> Response {
    match certs.register(registry, body.id, body.fingerprint) {
        Ok(()) => {
            crate::telemetry::principal_changed("cert");
            tracing::info!(
                id = body.id,
                fingerprint = hex::encode(body.fingerprint),
                "ISO 8583 client certificate registered"
            );
            Response::PrincipalCertRegistered(PrincipalCertInfo {
                id: body.id,
                fingerprints: certs.of(body.id),
            })
        }
        Err(error) => refusal(error),
    }
}

fn refusal(error: RegistryError) -> Response {
    let code = match error {
        RegistryError::Invalid(_) | RegistryError::StoreHeld { .. } | RegistryError::Unknown(_) => {
            ErrorCode::InvalidArgument
        }
        RegistryError::LastOperator => ErrorCode::Forbidden,
        RegistryError::Storage(_) => ErrorCode::Internal,
    };
    Response::error(code, error.to_string())
}
