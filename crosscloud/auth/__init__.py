"""Who we are in both clouds: the managed identity, its federation into AWS, credential_process."""
