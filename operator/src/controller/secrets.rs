//! The two values the operator generates once and keeps: the managed Redis
//! password and the drain API's admin token. They are read back from their
//! Secrets on every reconcile, so a restart of the operator changes nothing.

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use rand::{Rng, distr::Alphanumeric};

use crate::{
    api::ChatCluster,
    resources::{Generated, names},
};

/// The stored values, or fresh random ones where a Secret or key is missing.
pub async fn generated(client: &Client, cc: &ChatCluster) -> Result<Generated, kube::Error> {
    let namespace = names::namespace(cc);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    Ok(Generated {
        redis_password: stored_or_new(&secrets, &names::redis_auth(cc), "password").await?,
        admin_token: stored_or_new(&secrets, &names::admin_secret(cc), "token").await?,
    })
}

async fn stored_or_new(
    secrets: &Api<Secret>,
    name: &str,
    key: &str,
) -> Result<String, kube::Error> {
    Ok(read(secrets, name, key)
        .await?
        .unwrap_or_else(random_secret))
}

/// One key of a Secret, from `data` (as the API server stores it) or
/// `stringData` (as written); `None` when the Secret or the key is missing.
pub async fn read(
    secrets: &Api<Secret>,
    name: &str,
    key: &str,
) -> Result<Option<String>, kube::Error> {
    Ok(secrets.get_opt(name).await?.and_then(|secret| {
        let from_data = secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .and_then(|v| String::from_utf8(v.0.clone()).ok());
        from_data.or_else(|| {
            secret
                .string_data
                .as_ref()
                .and_then(|d| d.get(key))
                .cloned()
        })
    }))
}

/// 40 random letters and digits (about 238 bits).
pub fn random_secret() -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(40)
        .map(char::from)
        .collect()
}
