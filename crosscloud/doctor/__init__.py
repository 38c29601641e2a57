"""The doctor: checks the whole trust chain (identity -> Entra token -> STS -> S3) and says how to fix it."""
