//! The DynamoDB foundation every table adapter stands on: one client built at cold start and
//! the names of the function's tables ([`DynamoDb`]), handing each adapter a [`TableHandle`]
//! (that client and one table's name) instead of each adapter keeping its own pair.

use std::sync::Arc;

use aws_sdk_dynamodb::Client;

use crate::config::{ResourceNames, Table};

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

    fn client() -> Client {
        let config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
            .build();
        Client::from_conf(config)
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
