"""The Concur domain: notification model, XML parsing, host policy. Framework-free."""
