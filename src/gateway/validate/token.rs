//! The HTTP API's bearer tokens (operator): answered here, straight from
//! the token table, which writes each change durably (one synced write)
//! before the answer. Operators change tokens rarely, so the write is
//! done on the connection's task rather than through the admin lane.

use super::{Action, Context, reject};
use crate::auth::RegistryError;
use crate::protocol::{
    ErrorCode, PrincipalTokens, Response, TokenAddRequest, TokenListRequest, TokenRevokeRequest,
};

pub(super) fn add(body: TokenAddRequest, context: &Context<'_>) -> Action {
    let Some((tokens, registry)) = context.tokens else {
        return unavailable();
    };
    match tokens.add(registry, body.id, body.hash) {
        Ok(()) => {
            tracing::info!(id = body.id, "HTTP token added");
            Action::Reply(Response::TokenAdded(listed(tokens, body.id)))
        }
        Err(error) => refusal(error),
    }
}

pub(super) fn list(body: TokenListRequest, context: &Context<'_>) -> Action {
    let Some((tokens, registry)) = context.tokens else {
        return unavailable();
    };
    if registry.get(body.id).is_none() {
        return refusal(RegistryError::Unknown(body.id));
    }
    Action::Reply(Response::Tokens(listed(tokens, body.id)))
}

pub(super) fn revoke(body: TokenRevokeRequest, context: &Context<'_>) -> Action {
    let Some((tokens, _)) = context.tokens else {
        return unavailable();
    };
    match tokens.revoke(body.id, body.token) {
        Ok(()) => {
            tracing::info!(id = body.id, token = %hex::encode(body.token), "HTTP token revoked");
            Action::Reply(Response::TokenRevoked(listed(tokens, body.id)))
        }
        Err(error) => refusal(error),
    }
}

fn listed(tokens: &crate::auth::Tokens, id: u32) -> PrincipalTokens {
    PrincipalTokens {
        id,
        tokens: tokens.of(id),
    }
}

fn refusal(error: RegistryError) -> Action {
    let code = match error {
        RegistryError::Storage(_) => ErrorCode::Internal,
        _ => ErrorCode::InvalidArgument,
    };
    reject(code, error.to_string())
}

fn unavailable() -> Action {
    reject(ErrorCode::Internal, "tokens are not kept here".to_string())
}
