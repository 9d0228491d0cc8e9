//! The leader Lease: one replica reconciles at a time.

use std::time::Duration;

use kube::Client;
use kube::api::Api;
use tracing::{info, warn};

use super::Error;

/// What a replica does with the leader Lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseAction {
    /// Free, expired, or ours: write it with us as holder and a fresh renew time.
    Take,
    /// Another replica holds it and renewed it recently.
    Wait,
}

/// The other holder's Lease record as this replica last saw it change, and when (on this
/// replica's monotonic clock). Expiry is judged from that, as client-go's leader election
/// does, never from the holder's `renewTime`: clocks of two nodes may disagree, and a
/// skewed clock must not take over a live Lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// Holder and renew time as written.
    pub record: String,
    pub at: std::time::Instant,
}

/// Pure: whether `me` may take or renew `lease` at `now`, given what was `observed` of it
/// before (updated here).
pub fn lease_action(
    lease: Option<&k8s_openapi::api::coordination::v1::LeaseSpec>,
    me: &str,
    observed: &mut Option<Observed>,
    now: std::time::Instant,
) -> LeaseAction {
    let Some(spec) = lease else { return LeaseAction::Take };
    let holder = spec.holder_identity.as_deref().unwrap_or_default();
    if holder.is_empty() || holder == me {
        return LeaseAction::Take;
    }
    let record = format!("{holder}@{:?}", spec.renew_time.as_ref().map(|t| t.0));
    let duration = Duration::from_secs(u64::try_from(spec.lease_duration_seconds.unwrap_or(15)).unwrap_or(15));
    match observed {
        Some(o) if o.record == record => {
            if now.duration_since(o.at) > duration {
                LeaseAction::Take
            } else {
                LeaseAction::Wait
            }
        }
        _ => {
            *observed = Some(Observed { record, at: now });
            LeaseAction::Wait
        }
    }
}

/// The leader Lease: only its holder reconciles, so two replicas never race each other's
/// writes. Tried every [`LEASE_RETRY`] (each request bounded by it); a leader that cannot
/// renew within [`LEASE_RENEW_DEADLINE`] exits before another replica may take over (the
/// Deployment restarts it); SIGTERM releases it so a standby takes over at once.
const LEASE_NAME: &str = "ferrolb-controller";
const LEASE_DURATION: i32 = 15;
const LEASE_RENEW_DEADLINE: Duration = Duration::from_secs(10);
const LEASE_RETRY: Duration = Duration::from_secs(2);

/// Tries once to take or renew the Lease; true if we hold it afterwards.
pub async fn try_lead(
    client: &Client,
    namespace: &str,
    me: &str,
    observed: &mut Option<Observed>,
) -> Result<bool, Error> {
    use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
    let api: Api<Lease> = Api::namespaced(client.clone(), namespace);
    let current = api.get_opt(LEASE_NAME).await?;
    let spec = current.as_ref().and_then(|l| l.spec.as_ref());
    if lease_action(spec, me, observed, std::time::Instant::now()) == LeaseAction::Wait {
        return Ok(false);
    }
    let now = k8s_openapi::jiff::Timestamp::now();
    let previous = spec.cloned().unwrap_or_default();
    let ours = previous.holder_identity.as_deref() == Some(me);
    let spec = LeaseSpec {
        holder_identity: Some(me.into()),
        lease_duration_seconds: Some(LEASE_DURATION),
        acquire_time: if ours { previous.acquire_time.clone() } else { Some(MicroTime(now)) },
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(previous.lease_transitions.unwrap_or(0) + i32::from(!ours && current.is_some())),
        ..LeaseSpec::default()
    };
    let lease = Lease {
        metadata: kube::api::ObjectMeta {
            name: Some(LEASE_NAME.into()),
            namespace: Some(namespace.into()),
            resource_version: current.as_ref().and_then(|l| l.metadata.resource_version.clone()),
            ..Default::default()
        },
        spec: Some(spec),
    };
    // Conditional on the version read: of two replicas taking an expired Lease, one wins.
    let result = match current {
        Some(_) => api.replace(LEASE_NAME, &kube::api::PostParams::default(), &lease).await,
        None => api.create(&kube::api::PostParams::default(), &lease).await,
    };
    match result {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.is_conflict() || s.is_already_exists() => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Gives the Lease up (SIGTERM): holder cleared, so a standby takes it on its next try
/// instead of waiting for it to expire. Only if we still hold it.
pub async fn release(client: &Client, namespace: &str, me: &str) -> Result<(), Error> {
    use k8s_openapi::api::coordination::v1::Lease;
    let api: Api<Lease> = Api::namespaced(client.clone(), namespace);
    let Some(mut lease) = api.get_opt(LEASE_NAME).await? else { return Ok(()) };
    let Some(spec) = lease.spec.as_mut().filter(|s| s.holder_identity.as_deref() == Some(me)) else { return Ok(()) };
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    api.replace(LEASE_NAME, &kube::api::PostParams::default(), &lease).await?;
    info!("leader Lease released");
    Ok(())
}

/// One bounded attempt: a hung API server counts as a failed try.
async fn try_lead_bounded(
    client: &Client,
    namespace: &str,
    me: &str,
    observed: &mut Option<Observed>,
) -> Result<bool, String> {
    match tokio::time::timeout(LEASE_RETRY, try_lead(client, namespace, me, observed)).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer within {LEASE_RETRY:?}")),
    }
}

/// Waits until this replica leads, then keeps renewing in the background; the process
/// exits if leadership is lost.
pub async fn lead(client: Client, namespace: String, me: String) {
    let mut observed = None;
    let mut said = false;
    loop {
        match try_lead_bounded(&client, &namespace, &me, &mut observed).await {
            Ok(true) => break,
            Ok(false) if !said => {
                said = true;
                info!(lease = LEASE_NAME, "another replica leads; standing by");
            }
            Ok(false) => {}
            Err(e) => warn!(error = %e, "leader election: cannot read or write the Lease; waiting"),
        }
        tokio::time::sleep(LEASE_RETRY).await;
    }
    info!(identity = %me, "leading");
    tokio::spawn(async move {
        let mut last_ok = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(LEASE_RETRY).await;
            match try_lead_bounded(&client, &namespace, &me, &mut observed).await {
                Ok(true) => last_ok = tokio::time::Instant::now(),
                Ok(false) => {
                    tracing::error!("leadership lost to another replica; exiting");
                    std::process::exit(1);
                }
                Err(e) => warn!(error = %e, "cannot renew the leader Lease"),
            }
            if last_ok.elapsed() > LEASE_RENEW_DEADLINE {
                tracing::error!("leader Lease not renewed within {LEASE_RENEW_DEADLINE:?}; exiting");
                std::process::exit(1);
            }
        }
    });
}
