//! Turning a Knative Destination into a URL: a URI as is, a reference through
//! the Addressable duck type, a core Service by its cluster DNS name.

use dynamodb_source_api::resource::Destination;
use dynamodb_source_api::secret_url;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DynamicObject};
use kube::core::GroupVersionKind;
use kube::{Client, discovery};
use serde_json::Value;
use url::Url;

use crate::status::Problem;

/// The address an Addressable publishes: `status.address.url`, else the first
/// of `status.addresses`.
pub(crate) fn address_of(object: &Value) -> Option<&str> {
    let status = object.get("status")?;
    status
        .get("address")
        .and_then(|a| a.get("url"))
        .and_then(Value::as_str)
        .or_else(|| {
            status
                .get("addresses")?
                .as_array()?
                .first()?
                .get("url")?
                .as_str()
        })
        .filter(|url| !url.is_empty())
}

/// `uri` alone, or relative to the referenced object's address.
pub(crate) fn combine(base: Option<&str>, uri: Option<&str>) -> Result<Url, Problem> {
    // Messages become status conditions and Events: never with a password.
    let invalid = |what: &str, e: url::ParseError| {
        Problem::new(
            "SinkInvalid",
            format!("{}: {e}", secret_url::redact_text(what)),
        )
    };
    let url = match (base, uri) {
        (Some(base), None) => Url::parse(base).map_err(|e| invalid(base, e))?,
        (Some(base), Some(uri)) => {
            let base = Url::parse(base).map_err(|e| invalid(base, e))?;
            base.join(uri).map_err(|e| invalid(uri, e))?
        }
        (None, Some(uri)) => {
            Url::parse(uri).map_err(|e| invalid(&format!("{uri:?} is not an absolute URI"), e))?
        }
        (None, None) => {
            return Err(Problem::new(
                "SinkMissing",
                "the destination has neither ref nor uri",
            ));
        }
    };
    match url.scheme() {
        "http" | "https" if url.host().is_some() => Ok(url),
        other => Err(Problem::new(
            "SinkInvalid",
            format!(
                "{} has scheme {other:?}: only http and https sinks are supported",
                secret_url::without_userinfo(&url)
            ),
        )),
    }
}

fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((group, version)) => (group, version),
        None => ("", api_version),
    }
}

/// Resolves a destination for a source in `namespace`.
pub(crate) async fn resolve(
    client: &Client,
    namespace: &str,
    destination: &Destination,
) -> Result<Url, Problem> {
    let Some(reference) = &destination.reference else {
        return combine(None, destination.uri.as_deref());
    };
    let ns = reference
        .namespace
        .as_deref()
        .filter(|n| !n.is_empty())
        .unwrap_or(namespace);
    let (group, version) = split_api_version(&reference.api_version);
    let what = format!("{} {}/{}", reference.kind, ns, reference.name);
    let not_found = || Problem::new("SinkNotFound", format!("{what} does not exist"));
    if group.is_empty() && version == "v1" && reference.kind == "Service" {
        let services: Api<Service> = Api::namespaced(client.clone(), ns);
        return match services.get_opt(&reference.name).await {
            Ok(Some(_)) => {
                let base = format!("http://{}.{ns}.svc.cluster.local", reference.name);
                combine(Some(&base), destination.uri.as_deref())
            }
            Ok(None) => Err(not_found()),
            Err(e) => Err(Problem::new(
                "SinkUnreadable",
                format!("reading {what}: {e}"),
            )),
        };
    }
    let gvk = GroupVersionKind::gvk(group, version, &reference.kind);
    let (resource, _) = discovery::pinned_kind(client, &gvk).await.map_err(|e| {
        Problem::new(
            "SinkKindUnknown",
            format!(
                "{} {} is not served by this cluster: {e}",
                reference.api_version, reference.kind
            ),
        )
    })?;
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &resource);
    let object = match api.get_opt(&reference.name).await {
        Ok(Some(object)) => object,
        Ok(None) => return Err(not_found()),
        Err(e) => {
            return Err(Problem::new(
                "SinkUnreadable",
                format!("reading {what}: {e}"),
            ));
        }
    };
    let value = serde_json::to_value(&object).unwrap_or_default();
    let Some(address) = address_of(&value) else {
        return Err(Problem::new(
            "SinkNotAddressable",
            format!("{what} has no status.address.url (is it Addressable and ready?)"),
        ));
    };
    combine(Some(address), destination.uri.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_comes_from_status_address_or_addresses() {
        let a = serde_json::json!({"status": {"address": {"url": "http://a.ns.svc"}}});
        assert_eq!(address_of(&a), Some("http://a.ns.svc"));
        let b = serde_json::json!({"status": {"addresses": [{"url": "https://b"}, {"url": "http://c"}]}});
        assert_eq!(address_of(&b), Some("https://b"));
        assert_eq!(address_of(&serde_json::json!({"status": {}})), None);
    }

    #[test]
    fn uri_is_relative_to_the_reference() {
        let url = combine(
            Some("http://broker.ns.svc.cluster.local/default/b"),
            Some("extra"),
        )
        .expect("joins");
        assert_eq!(
            url.as_str(),
            "http://broker.ns.svc.cluster.local/default/extra"
        );
        let url = combine(Some("http://svc.ns.svc.cluster.local"), Some("/events")).expect("joins");
        assert_eq!(url.as_str(), "http://svc.ns.svc.cluster.local/events");
    }

    #[test]
    fn problems_never_show_a_sink_password() {
        for uri in ["ftp://user:s3cret@host/", "http://user:s3cret@bad host/"] {
            let problem = combine(None, Some(uri)).expect_err(uri);
            assert!(!format!("{problem:?}").contains("s3cret"), "{problem:?}");
        }
    }

    #[test]
    fn a_uri_alone_must_be_absolute_http() {
        assert!(combine(None, Some("https://example.com/x")).is_ok());
        assert_eq!(
            combine(None, Some("/relative"))
                .expect_err("relative")
                .reason,
            "SinkInvalid"
        );
        assert_eq!(
            combine(None, Some("ftp://x/y")).expect_err("ftp").reason,
            "SinkInvalid"
        );
    }
}
