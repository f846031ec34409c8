"""The district command centre: durable intake, database, API and services for the police."""
