//! The DynamoDB foundation every table adapter stands on: one client built at cold start and
//! the names of the function's tables ([`DynamoDb`]), handing each adapter a [`TableHandle`]
//! (that client and one table's name) instead of each adapter keeping its own pair.

use std::sync::Arc;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;

use crate::config::{ResourceNames, Table};

/// DynamoDB's error code for a write refused by its condition expression.
const CONDITION_FAILED: &str = "ConditionalCheckFailedException";

/// What a conditional `PutItem` / `UpdateItem` / `DeleteItem` came to: every adapter asks the
/// same question of a conditional write, so it is answered once here.
pub trait ConditionalWrite {
    /// The SDK error of the call.
    type Error;
    /// `Ok(true)` when written, `Ok(false)` when DynamoDB refused it because its condition did
    /// not hold, the error for any other failure.
    fn condition_held(self) -> Result<bool, Self::Error>;
}

impl<T, E: ProvideErrorMetadata, R> ConditionalWrite for Result<T, SdkError<E, R>> {
    type Error = SdkError<E, R>;

    fn condition_held(self) -> Result<bool, Self::Error> {
        match self {
            Ok(_) => Ok(true),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.code() == Some(CONDITION_FAILED)) =>
            {
                Ok(false)
            }
            Err(err) => Err(err),
        }
    }
}

/// The cancellation reason codes of a cancelled transaction, one per item (`"None"` for the
/// items that were not at fault); empty for any other error.
pub fn cancellation_codes(err: &SdkError<TransactWriteItemsError>) -> Vec<String> {
    match err.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(c)) => c
            .cancellation_reasons()
            .iter()
            .map(|r| r.code().unwrap_or("None").to_owned())
            .collect(),
        _ => Vec::new(),
    }
}

/// One DynamoDB table as an adapter uses it: the shared client and the table's name. Cloning
/// it is cheap (the client and the name are shared).
#[derive(Debug, Clone)]
pub struct TableHandle {
    client: Client,
    name: Arc<str>,
}

impl TableHandle {
    /// The table `name` reached through `client`.
    pub fn new(client: Client, name: impl Into<String>) -> Self {
        Self {
            client,
            name: Arc::from(name.into()),
        }
    }

    /// The client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The table's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Another table reached through the same client.
    pub fn sibling(&self, name: impl Into<String>) -> Self {
        Self::new(self.client.clone(), name)
    }
}

/// The DynamoDB foundation of a function: one client and the names of its tables.
#[derive(Debug, Clone)]
pub struct DynamoDb {
    client: Client,
    names: ResourceNames,
}

impl DynamoDb {
    /// The tables named in `names`, reached through `client`.
    pub fn new(client: Client, names: ResourceNames) -> Self {
        Self { client, names }
    }

    /// The handle of `table`; panics like [`ResourceNames::table`] when the function's
    /// configuration did not load it (a wiring bug, found at cold start).
    pub fn table(&self, table: Table) -> TableHandle {
        TableHandle::new(self.client.clone(), self.names.table(table))
    }

    /// The client.
    pub fn client(&self) -> &Client {
        &self.client
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::config::http::HttpResponse;
    use aws_sdk_dynamodb::error::ErrorMetadata;
    use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
    use aws_sdk_dynamodb::types::error::ConditionalCheckFailedException;
    use aws_smithy_types::body::SdkBody;

    fn client() -> Client {
        let config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
            .build();
        Client::from_conf(config)
    }

    fn refused(code: &str) -> SdkError<UpdateItemError, HttpResponse> {
        let meta = ErrorMetadata::builder()
            .code(code)
            .message("refused")
            .build();
        let err = match code {
            CONDITION_FAILED => UpdateItemError::ConditionalCheckFailedException(
                ConditionalCheckFailedException::builder()
                    .message("refused")
                    .meta(meta)
                    .build(),
            ),
            _ => UpdateItemError::generic(meta),
        };
        let response = HttpResponse::new(400.try_into().unwrap(), SdkBody::empty());
        SdkError::service_error(err, response)
    }

    #[test]
    fn only_a_refused_condition_reads_as_not_held() {
        let written: Result<(), SdkError<UpdateItemError, HttpResponse>> = Ok(());
        assert!(written.condition_held().unwrap());
        assert!(
            !Err::<(), _>(refused(CONDITION_FAILED))
                .condition_held()
                .unwrap()
        );
        let throttled =
            Err::<(), _>(refused("ProvisionedThroughputExceededException")).condition_held();
        assert_eq!(
            throttled.unwrap_err().into_service_error().code(),
            Some("ProvisionedThroughputExceededException")
        );
    }

    #[test]
    fn every_handle_names_its_own_table_on_the_one_client() {
        let names =
            ResourceNames::from_lookup(&[Table::Messages, Table::Control], &[], |k| match k {
                "MESSAGES_TABLE" => Some("m-table".to_owned()),
                "CONTROL_TABLE" => Some("c-table".to_owned()),
                _ => None,
            })
            .unwrap();
        let dynamodb = DynamoDb::new(client(), names);
        let messages = dynamodb.table(Table::Messages);
        assert_eq!(messages.name(), "m-table");
        assert_eq!(dynamodb.table(Table::Control).name(), "c-table");
        assert_eq!(messages.sibling("other").name(), "other");
    }
}
