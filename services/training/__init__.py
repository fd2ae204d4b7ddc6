"""What every trainer service shares: durable jobs in SQLite, dataset uploads, the job runner and its gRPC services."""
