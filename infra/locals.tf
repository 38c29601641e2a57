data "azurerm_client_config" "current" {}

locals {
  tags = merge({ app = var.name, "managed-by" = "terraform" }, var.tags)

  # Globally unique names (storage accounts, Function App) need a suffix; derive it from the
  # subscription so re-applies are stable and two subscriptions do not collide.
  suffix        = substr(sha256("${data.azurerm_client_config.current.subscription_id}/${var.name}"), 0, 6)
  compact_name  = substr(replace(var.name, "-", ""), 0, 10)
  function_name = "${var.name}-${local.suffix}"

  # --- Entra ID -> AWS federation: the values both clouds must agree on ----------------
  tenant_id = data.azuread_client_config.current.tenant_id
  # v1 access tokens (entra.tf pins requested_access_token_version = 1) carry this issuer.
  issuer = "https://sts.windows.net/${local.tenant_id}/"
  # IAM names the provider (and its condition keys) by the issuer without the scheme.
  provider_key = trimprefix(local.issuer, "https://")
  # App ID URI = the token's `aud` = the IAM provider's client ID = AWS_WEB_IDENTITY_AUDIENCE.
  audience = "api://${local.tenant_id}/${var.name}"

  backup_bucket_name     = coalesce(var.backup_s3_bucket_name, var.s3_bucket_name)
  separate_backup_bucket = local.backup_bucket_name != var.s3_bucket_name
}
