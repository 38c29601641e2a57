# Entra ID side of the federation: an app registration that represents "AWS" as a token
# audience. The managed identity asks Entra ID for a token for this app's identifier URI;
# AWS STS accepts that token because the IAM OIDC provider (aws.tf) trusts the issuer and
# lists the identifier URI as a client ID, and the role trust policy pins aud and sub.

data "azuread_client_config" "current" {}

locals {
  app_role_value = "AWS.AssumeRoleWithWebIdentity"
  # Stable, deterministic role ID (no random provider, no churn on re-apply).
  app_role_id = uuidv5("url", "${local.audience}/roles/${local.app_role_value}")
}

resource "azuread_application" "aws_federation" {
  display_name     = "${var.name}-aws-federation"
  sign_in_audience = "AzureADMyOrg"
  owners           = [data.azuread_client_config.current.object_id]

  # api://<tenant-id>/<name>: tenants with the default app management policy (identifier
  # URI restrictions, "uriAdditionWithoutUniqueTenantIdentifier") refuse identifier URIs
  # that carry no tenant-unique part, e.g. "api://crosscloud" - creating the app fails with
  # a 400 from Microsoft Graph. The tenant ID makes it unique and is allowed everywhere.
  identifier_uris = [local.audience]

  api {
    # Pinned to v1 on purpose. Managed identities get v1 access tokens for this resource,
    # whose issuer is https://sts.windows.net/<tenant-id>/ - exactly the URL of the IAM OIDC
    # provider in aws.tf - and whose aud is the identifier URI (the provider's client ID).
    # With v2, iss would become https://login.microsoftonline.com/<tenant-id>/v2.0 and aud
    # the application's client ID (a GUID): STS would answer "No OpenIDConnect provider
    # found" and "Incorrect token audience" until both were changed in AWS.
    requested_access_token_version = 1
  }

  # An application permission: only identities assigned this role get a token at all,
  # because the service principal requires assignment.
  app_role {
    allowed_member_types = ["Application"]
    description          = "Obtain tokens that AWS STS exchanges for ${var.name} role credentials."
    display_name         = "AWS federation"
    enabled              = true
    id                   = local.app_role_id
    value                = local.app_role_value
  }

  lifecycle {
    precondition {
      condition     = data.azuread_client_config.current.tenant_id == data.azurerm_client_config.current.tenant_id
      error_message = "The azuread provider's tenant differs from the subscription's tenant: the managed identity can only get tokens from its own tenant. Set azure_tenant_id to the subscription's tenant."
    }
  }
}

resource "azuread_service_principal" "aws_federation" {
  client_id = azuread_application.aws_federation.client_id
  owners    = [data.azuread_client_config.current.object_id]
  # Without an assignment (below) Entra ID refuses the token (AADSTS501051), so no other
  # identity in the tenant can obtain a token with this audience.
  app_role_assignment_required = true
}

resource "azuread_app_role_assignment" "app_identity" {
  app_role_id         = azuread_service_principal.aws_federation.app_role_ids[local.app_role_value]
  principal_object_id = azurerm_user_assigned_identity.app.principal_id
  resource_object_id  = azuread_service_principal.aws_federation.object_id
}
