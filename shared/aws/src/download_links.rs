//! Presigned S3 GET links signed with SigV4 directly ([`S3DownloadLinks`]), for `send-api`'s
//! read API: building an S3 client would link its endpoint rules and operations (about a
//! megabyte of the bootstrap) only to sign a URL. The signing is the `aws-sigv4` crate the SDK
//! signs with, with the settings the SDK uses for S3 (single percent-encoding, no path
//! normalisation, unsigned payload); a test holds the links equal to the SDK's own.
//!
//! The URL is what the SDK's endpoint rules give for a plain bucket: path style under an
//! endpoint override (`AWS_ENDPOINT_URL`: the local emulator), else virtual-hosted
//! `https://<bucket>.s3.<region>.amazonaws.com/<key>` (`amazonaws.com.cn` in China regions).
//! FIPS, dual-stack and accelerate endpoints are not used by the stack's bucket.

use std::time::{Duration, SystemTime};

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{
    PercentEncodingMode, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
    UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use mailgate_core::ports::{BoxFuture, InboundDownloads};
use mailgate_core::{StoreError, StoreErrorKind};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// What SigV4 leaves unencoded in a path segment: the unreserved characters.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The operation name the links are recorded under in errors.
const OPERATION: &str = "PresignGetObject";

/// Presigned GET links to objects of one bucket.
#[derive(Debug, Clone)]
pub struct S3DownloadLinks {
    credentials: Option<SharedCredentialsProvider>,
    region: Option<String>,
    endpoint: Option<String>,
    bucket: String,
}

impl S3DownloadLinks {
    /// Links to `bucket`, signed with the credentials, region and endpoint of `sdk`.
    pub fn new(sdk: &aws_config::SdkConfig, bucket: impl Into<String>) -> Self {
        Self {
            credentials: sdk.credentials_provider(),
            region: sdk.region().map(|r| r.as_ref().to_owned()),
            endpoint: sdk
                .endpoint_url()
                .map(|e| e.trim_end_matches('/').to_owned()),
            bucket: bucket.into(),
        }
    }

    /// The unsigned URL of `key`.
    fn object_url(&self, region: &str, key: &str) -> String {
        let path: Vec<String> = key
            .split('/')
            .map(|segment| utf8_percent_encode(segment, PATH_SEGMENT).to_string())
            .collect();
        let path = path.join("/");
        match &self.endpoint {
            Some(endpoint) => format!("{endpoint}/{}/{path}", self.bucket),
            None => {
                let suffix = if region.starts_with("cn-") {
                    "amazonaws.com.cn"
                } else {
                    "amazonaws.com"
                };
                format!("https://{}.s3.{region}.{suffix}/{path}", self.bucket)
            }
        }
    }

    /// A link to `key` valid for `valid_for` from `now`.
    pub async fn link_at(
        &self,
        key: &str,
        valid_for: Duration,
        now: SystemTime,
    ) -> Result<String, StoreError> {
        let fail =
            |kind, e: Box<dyn std::error::Error + Send + Sync>| StoreError::new(kind, OPERATION, e);
        let region = self
            .region
            .as_deref()
            .ok_or_else(|| fail(StoreErrorKind::Other, "no AWS region configured".into()))?;
        let provider = self.credentials.as_ref().ok_or_else(|| {
            fail(
                StoreErrorKind::Other,
                "no AWS credentials configured".into(),
            )
        })?;
        // The credential chain may be fetching (container credentials): a retry can succeed.
        let credentials = provider
            .provide_credentials()
            .await
            .map_err(|e| fail(StoreErrorKind::Transient, Box::new(e)))?;
        let identity = credentials.into();
        let mut settings = SigningSettings::default();
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(valid_for);
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(region)
            .name("s3")
            .time(now)
            .settings(settings)
            .build()
            .map_err(|e| fail(StoreErrorKind::Other, Box::new(e)))?;
        // `x-id` names the operation, as the SDK's own links do.
        let url = format!("{}?x-id=GetObject", self.object_url(region, key));
        let signable = SignableRequest::new(
            "GET",
            url.as_str(),
            std::iter::empty(),
            SignableBody::UnsignedPayload,
        )
        .map_err(|e| fail(StoreErrorKind::Other, Box::new(e)))?;
        let (instructions, _signature) = sign(signable, &params.into())
            .map_err(|e| fail(StoreErrorKind::Other, Box::new(e)))?
            .into_parts();
        let mut request = http::Request::builder()
            .method("GET")
            .uri(url.as_str())
            .body(())
            .map_err(|e| fail(StoreErrorKind::Other, Box::new(e)))?;
        instructions.apply_to_request_http1x(&mut request);
        Ok(request.uri().to_string())
    }
}

impl InboundDownloads for S3DownloadLinks {
    fn download_link<'a>(
        &'a self,
        key: &'a str,
        valid_for: Duration,
    ) -> BoxFuture<'a, Result<String, StoreError>> {
        Box::pin(self.link_at(key, valid_for, SystemTime::now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_credential_types::Credentials;
    use aws_sdk_s3::presigning::PresigningConfig;

    fn sdk(endpoint: Option<&str>, region: &str) -> aws_config::SdkConfig {
        let mut builder = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(region.to_owned()))
            .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                "AKIDEXAMPLE",
                "test-secret-not-real",
                Some("test-session-token".to_owned()),
                None,
                "test",
            )));
        if let Some(endpoint) = endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        builder.build()
    }

    /// The SDK's own presigned link for the same object, time and validity.
    async fn sdk_link(
        sdk: &aws_config::SdkConfig,
        bucket: &str,
        key: &str,
        now: SystemTime,
    ) -> String {
        let client = crate::inbound::S3InboundObjects::client(sdk);
        let presigning = PresigningConfig::builder()
            .start_time(now)
            .expires_in(Duration::from_secs(3600))
            .build()
            .unwrap();
        client
            .get_object()
            .bucket(bucket)
            .key(key)
            .presigned(presigning)
            .await
            .unwrap()
            .uri()
            .to_owned()
    }

    #[tokio::test]
    async fn links_equal_the_sdks_own_presigned_urls() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_461_200);
        let bucket = "mailgate-prod-inbound-123456789012-eu-west-1";
        for (endpoint, region) in [
            (None, "eu-west-1"),
            (None, "us-east-1"),
            (Some("http://127.0.0.1:4566"), "us-east-1"),
        ] {
            let sdk = sdk(endpoint, region);
            for key in [
                "inbound/inb_0123456789abcdefghjkmnpqrs/raw.eml",
                "ses/a b+c=d",
            ] {
                let ours = S3DownloadLinks::new(&sdk, bucket)
                    .link_at(key, Duration::from_secs(3600), now)
                    .await
                    .unwrap();
                assert_eq!(
                    ours,
                    sdk_link(&sdk, bucket, key, now).await,
                    "{endpoint:?} {region} {key}"
                );
            }
        }
    }

    #[tokio::test]
    async fn without_a_region_or_credentials_no_link_is_made() {
        let sdk = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build();
        let err = S3DownloadLinks::new(&sdk, "b")
            .link_at("k", Duration::from_secs(60), SystemTime::now())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::Other);
    }
}
