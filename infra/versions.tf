# Provider and Terraform versions are pinned to a major line (~>): minor/patch releases
# are taken, a new major (which may rename or drop arguments) is an explicit upgrade.
terraform {
  required_version = ">= 1.6.0, < 2.0.0"

  required_providers {
    azurerm = {
      source = "hashicorp/azurerm"
      # 4.40+: azurerm_function_app_flex_consumption with https_only and
      # storage_user_assigned_identity_id.
      version = "~> 4.40"
    }
    azuread = {
      source  = "hashicorp/azuread"
      version = "~> 3.0"
    }
    aws = {
      source = "hashicorp/aws"
      # 6.x: thumbprint_list on aws_iam_openid_connect_provider is optional.
      version = "~> 6.0"
    }
    azapi = {
      source = "Azure/azapi"
      # Only for the AzureWebJobsStorage work-around in azure.tf (azurerm issue #29693).
      version = "~> 2.0"
    }
  }
}

provider "azurerm" {
  features {}
  # null = take ARM_SUBSCRIPTION_ID / the Azure CLI's default subscription.
  subscription_id = var.azure_subscription_id
  # Shared keys are disabled on every storage account, so the provider must use Entra ID
  # for any storage data-plane call it makes.
  storage_use_azuread = true
}

provider "azuread" {
  # null = ARM_TENANT_ID / the Azure CLI's tenant. It must be the subscription's tenant:
  # the managed identity, the app registration and the issuer AWS trusts all live in one
  # tenant (a precondition in entra.tf fails the plan otherwise).
  tenant_id = var.azure_tenant_id
}

provider "aws" {
  region = var.aws_region

  default_tags {
    tags = local.tags
  }
}

provider "azapi" {}
