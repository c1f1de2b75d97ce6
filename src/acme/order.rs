//! One ACME order, start to finish: new order, challenges published and answered, CSR,
//! certificate chain. The protocol (JWS, nonces, retries on badNonce) is instant-acme's.

use std::time::Duration;

use instant_acme::{
    Account, AuthorizationStatus, ChallengeType, Identifier, NewOrder, OrderStatus, RetryPolicy,
};

use super::config::Challenge;
use super::storage::Storage;
use super::Registry;

/// An HTTP-01 token stays in shared storage at most this long (the order's own bound).
const TOKEN_TTL: Duration = Duration::from_secs(600);

/// A certificate just issued: the PEM chain (leaf first) and its PEM private key.
pub struct Issued {
    pub chain_pem: String,
    pub key_pem: String,
}

#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error("the CA refused or failed: {0}")]
    Acme(#[from] instant_acme::Error),
    #[error("the CA offers no {0} challenge for {1}")]
    NoChallenge(&'static str, String),
    #[error("validation failed: {0}")]
    Invalid(String),
    #[error("{0}")]
    Other(String),
}

/// Places an order for `hosts` and drives it to a certificate.
pub async fn issue(
    account: &Account,
    hosts: &[String],
    challenge: Challenge,
    registry: &Registry,
    storage: &Storage,
) -> Result<Issued, OrderError> {
    let identifiers: Vec<Identifier> = hosts.iter().map(|h| Identifier::Dns(h.clone())).collect();
    let mut order = account.new_order(&NewOrder::new(&identifiers)).await?;
    tracing::info!(hosts = ?hosts, order = %order.url(), "ACME order placed");
    let mut published: Vec<Published> = Vec::new();
    let result = drive(
        &mut order,
        hosts,
        challenge,
        registry,
        storage,
        &mut published,
    )
    .await;
    // Challenges are answered only while their order is pending.
    for item in published {
        match item {
            Published::Token(token) => {
                registry.remove_token(&token);
                if storage.is_shared() {
                    let _ = storage.delete(&format!("challenges/{token}")).await;
                }
            }
            Published::Alpn(host) => registry.remove_alpn(&host),
        }
    }
    result
}

enum Published {
    Token(String),
    Alpn(String),
}

async fn drive(
    order: &mut instant_acme::Order,
    hosts: &[String],
    challenge: Challenge,
    registry: &Registry,
    storage: &Storage,
    published: &mut Vec<Published>,
) -> Result<Issued, OrderError> {
    let kind = match challenge {
        Challenge::Http01 => ChallengeType::Http01,
        Challenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
    };
    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let mut authz = authz?;
        match authz.status {
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Valid => continue,
            other => {
                return Err(OrderError::Invalid(format!(
                    "authorization for {} is {other:?}",
                    authz.identifier()
                )))
            }
        }
        let name = authz.identifier().to_string();
        let mut handle = authz
            .challenge(kind.clone())
            .ok_or_else(|| OrderError::NoChallenge(challenge.as_str(), name.clone()))?;
        let key_authorization = handle.key_authorization();
        match challenge {
            Challenge::Http01 => {
                let token = handle.token.clone();
                registry.add_token(&token, key_authorization.as_str());
                published.push(Published::Token(token.clone()));
                if storage.is_shared() {
                    // Any replica behind the load balancer may receive the CA's request.
                    storage
                        .put(
                            &format!("challenges/{token}"),
                            key_authorization.as_str().as_bytes(),
                            Some(TOKEN_TTL),
                        )
                        .await
                        .map_err(|e| OrderError::Other(e.to_string()))?;
                }
            }
            Challenge::TlsAlpn01 => {
                let certified = super::challenges::tls_alpn01_certificate(
                    &name,
                    key_authorization.digest().as_ref(),
                )
                .map_err(OrderError::Other)?;
                registry.add_alpn(&name, certified);
                published.push(Published::Alpn(name.clone()));
            }
        }
        handle.set_ready().await?;
        tracing::info!(host = %name, challenge = challenge.as_str(), "ACME challenge ready");
    }

    let retries = RetryPolicy::new()
        .initial_delay(Duration::from_millis(250))
        .timeout(Duration::from_secs(120));
    let status = order.poll_ready(&retries).await?;
    if status != OrderStatus::Ready {
        return Err(OrderError::Invalid(failure_details(order).await));
    }

    let key = rcgen::KeyPair::generate().map_err(|e| OrderError::Other(e.to_string()))?;
    let params = rcgen::CertificateParams::new(hosts.to_vec())
        .map_err(|e| OrderError::Other(e.to_string()))?;
    let csr = params
        .serialize_request(&key)
        .map_err(|e| OrderError::Other(e.to_string()))?;
    order.finalize_csr(csr.der()).await?;
    let chain_pem = order.poll_certificate(&retries).await?;
    Ok(Issued {
        chain_pem,
        key_pem: key.serialize_pem(),
    })
}

/// What the CA said about the failed challenges (its problem details name the cause).
async fn failure_details(order: &mut instant_acme::Order) -> String {
    let mut details = Vec::new();
    let mut authorizations = order.authorizations();
    while let Some(Ok(authz)) = authorizations.next().await {
        for challenge in &authz.challenges {
            if let Some(error) = &challenge.error {
                details.push(format!("{}: {error}", authz.identifier()));
            }
        }
    }
    if details.is_empty() {
        "the order became invalid".to_string()
    } else {
        details.join("; ")
    }
}
