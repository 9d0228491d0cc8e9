//! The speakers' membership key Secret.

use kube::Client;
use kube::api::Api;
use tracing::info;

use ferrolb_runtime::MEMBERLIST_SECRET;

use super::Error;

/// Creates the membership key Secret if it does not exist (as MetalLB's controller does),
/// with 32 random bytes as hex. An existing one is never touched.
pub async fn ensure_memberlist_secret(client: &Client, namespace: &str) -> Result<(), Error> {
    use k8s_openapi::api::core::v1::Secret;
    use std::io::Read;
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    if api.get_opt(MEMBERLIST_SECRET).await?.is_some() {
        return Ok(());
    }
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)).map_err(Error::Random)?;
    let key: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(MEMBERLIST_SECRET.into()),
            namespace: Some(namespace.into()),
            ..Default::default()
        },
        string_data: Some([("secretkey".to_string(), key)].into()),
        ..Default::default()
    };
    match api.create(&kube::api::PostParams::default(), &secret).await {
        Ok(_) => {
            info!(secret = MEMBERLIST_SECRET, "membership key created");
            Ok(())
        }
        // Another replica was first.
        Err(kube::Error::Api(s)) if s.is_already_exists() => Ok(()),
        Err(e) => Err(e.into()),
    }
}
