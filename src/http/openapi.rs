//! The OpenAPI document of the HTTP API, generated from the handlers'
//! annotations and served at `/v1/openapi.json` (no swagger-ui: its build
//! downloads assets).

use super::api;
use super::problem::Problem;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "kessai",
        version = "1",
        description = "Prepaid PIN card payments. Amounts are integers in minor units. \
            Errors are RFC 9457 problem documents (application/problem+json) with a stable `type`. \
            See docs/HTTP.md."
    ),
    paths(
        api::create_payment,
        api::get_payment,
        api::capture,
        api::void,
        api::refund,
        api::balance,
        api::healthz,
    ),
    components(schemas(
        api::PaymentRequest,
        api::AmountRequest,
        api::BalanceQuery,
        api::Payment,
        api::Capture,
        api::Refund,
        api::Balance,
        api::CardPart,
        api::Health,
        Problem,
    )),
    modifiers(&BearerAuth),
    tags(
        (name = "payments", description = "Payments and authorizations by the merchant's order id"),
        (name = "cards", description = "Cards"),
        (name = "meta", description = "The service itself"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("kst1_ + 64 hex digits")
                    .build(),
            ),
        );
    }
}

/// The document as JSON.
pub fn document() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .expect("the OpenAPI document serializes")
}
