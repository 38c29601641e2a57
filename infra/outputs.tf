# One output per app setting of the spec (also usable for local.settings.json), plus what
# the setup guide needs to publish and verify the app.

output "app_settings" {
  description = "The crosscloud app settings, as configured on the Function App."
  value = {
    AZURE_CLIENT_ID             = local.app_settings.AZURE_CLIENT_ID
    AZURE_STORAGE_CONTAINER_URL = local.app_settings.AZURE_STORAGE_CONTAINER_URL
    AWS_ROLE_ARN                = local.app_settings.AWS_ROLE_ARN
    AWS_WEB_IDENTITY_AUDIENCE   = local.app_settings.AWS_WEB_IDENTITY_AUDIENCE
    AWS_REGION                  = local.app_settings.AWS_REGION
    S3_BUCKET                   = local.app_settings.S3_BUCKET
    BACKUP_SCHEDULE             = local.app_settings.BACKUP_SCHEDULE
    BACKUP_S3_BUCKET            = local.app_settings.BACKUP_S3_BUCKET
    BACKUP_S3_PREFIX            = local.app_settings.BACKUP_S3_PREFIX
    AWS_BACKUP_ROLE_ARN         = local.app_settings.AWS_BACKUP_ROLE_ARN
    AWS_RESTORE_ROLE_ARN        = local.app_settings.AWS_RESTORE_ROLE_ARN
  }
}

output "AZURE_CLIENT_ID" {
  description = "Client ID of the user-assigned managed identity."
  value       = azurerm_user_assigned_identity.app.client_id
}

output "AZURE_STORAGE_CONTAINER_URL" {
  description = "URL of the data container."
  value       = local.app_settings.AZURE_STORAGE_CONTAINER_URL
}

output "AWS_ROLE_ARN" {
  description = "Read role assumed with the identity's Entra ID token."
  value       = aws_iam_role.read.arn
}

output "AWS_WEB_IDENTITY_AUDIENCE" {
  description = "App ID URI the identity requests tokens for (the token's aud)."
  value       = local.audience
}

output "AWS_REGION" {
  description = "Region for STS and S3."
  value       = var.aws_region
}

output "S3_BUCKET" {
  description = "Bucket that is listed and read."
  value       = aws_s3_bucket.data.bucket
}

output "BACKUP_SCHEDULE" {
  description = "NCRONTAB (UTC) of the scheduled backup."
  value       = var.backup_schedule
}

output "BACKUP_S3_BUCKET" {
  description = "Backup destination bucket."
  value       = local.backup_bucket_name
}

output "BACKUP_S3_PREFIX" {
  description = "Prefix the backup role may write under."
  value       = var.backup_s3_prefix
}

output "AWS_BACKUP_ROLE_ARN" {
  description = "Role used for writing backups."
  value       = aws_iam_role.backup.arn
}

output "AWS_RESTORE_ROLE_ARN" {
  description = "Role restores read backup versions with (empty unless enable_restore)."
  value       = local.app_settings.AWS_RESTORE_ROLE_ARN
}

# --- for publishing and troubleshooting ----------------------------------------------

output "function_app_name" {
  description = "Name of the Function App (for `func azure functionapp publish` / `az functionapp deploy`)."
  value       = azurerm_function_app_flex_consumption.app.name
}

output "function_app_url" {
  description = "Base URL of the HTTP API."
  value       = "https://${azurerm_function_app_flex_consumption.app.default_hostname}/api"
}

output "resource_group_name" {
  description = "Resource group of the Azure resources."
  value       = azurerm_resource_group.main.name
}

output "managed_identity_principal_id" {
  description = "Object (principal) ID of the identity: the token's sub/oid, pinned in the role trust policy."
  value       = azurerm_user_assigned_identity.app.principal_id
}

output "oidc_issuer" {
  description = "Issuer AWS trusts (v1 Entra ID tokens)."
  value       = local.issuer
}

output "oidc_provider_arn" {
  description = "ARN of the IAM OIDC provider."
  value       = aws_iam_openid_connect_provider.entra.arn
}

output "entra_application_client_id" {
  description = "Client ID of the app registration that represents AWS as a token audience."
  value       = azuread_application.aws_federation.client_id
}
