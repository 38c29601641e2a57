# Azure side: resource group, the one user-assigned identity, the data storage account
# (read-only for the app), the host storage account (AzureWebJobsStorage + deployment
# package), monitoring, and the Function App on Flex Consumption.
#
# Two storage accounts on purpose: the Functions host needs *write* access to its own
# storage (leases, keys, deployment packages), while the app must only *read* the data.
# Sharing one account would mean granting the identity write access next to the data.

resource "azurerm_resource_group" "main" {
  name     = "rg-${var.name}"
  location = var.azure_location
  tags     = local.tags
}

# The single identity used for Azure Blob Storage, AzureWebJobsStorage, Application
# Insights and - through its Entra token exchanged at AWS STS - S3.
resource "azurerm_user_assigned_identity" "app" {
  name                = "id-${var.name}"
  location            = azurerm_resource_group.main.location
  resource_group_name = azurerm_resource_group.main.name
  tags                = local.tags
}

# --- data storage account -------------------------------------------------------------

resource "azurerm_storage_account" "data" {
  #checkov:skip=CKV_AZURE_33:Queue service is unused on this account (blobs only); there is nothing to log.
  #checkov:skip=CKV_AZURE_35:Flex Consumption without VNet integration reaches storage over its public endpoint from non-fixed IPs, so the default network action must stay Allow; access is Entra-only (shared keys off) and RBAC-scoped. Add VNet integration + private endpoints to close it.
  #checkov:skip=CKV_AZURE_59:Same reason as CKV_AZURE_35: the Function App (no VNet integration) needs the public endpoint; every request still needs an Entra token with a data-plane role.
  #checkov:skip=CKV2_AZURE_33:Private endpoints need VNet integration of the Function App, which this baseline deployment does not include (see docs/setup.md, hardening).
  #checkov:skip=CKV2_AZURE_1:Encrypted at rest with Microsoft-managed keys plus infrastructure (double) encryption; customer-managed keys add a Key Vault and key rotation the project does not require.
  #checkov:skip=CKV_AZURE_43:The name is built from validated parts (st + <=10 [a-z0-9] + 6 hex + dat = <=21 chars) with sha256() of a data source, which checkov cannot evaluate; azurerm validates the resolved name at plan time.
  name                     = "st${local.compact_name}${local.suffix}dat"
  resource_group_name      = azurerm_resource_group.main.name
  location                 = azurerm_resource_group.main.location
  account_kind             = "StorageV2"
  account_tier             = "Standard"
  account_replication_type = var.data_replication_type

  shared_access_key_enabled         = false # Entra ID only: no account keys, no account SAS
  default_to_oauth_authentication   = true
  min_tls_version                   = "TLS1_2"
  https_traffic_only_enabled        = true
  allow_nested_items_to_be_public   = false
  public_network_access_enabled     = true # see the CKV_AZURE_59 skip above
  infrastructure_encryption_enabled = true
  cross_tenant_replication_enabled  = false
  local_user_enabled                = false # no SFTP/local users

  blob_properties {
    versioning_enabled = true

    delete_retention_policy {
      days = var.blob_soft_delete_days
    }

    container_delete_retention_policy {
      days = var.blob_soft_delete_days
    }
  }

  # Key-signed SAS cannot be issued at all (shared keys are off); the expiration policy is
  # defence in depth should keys ever be re-enabled. The app's own links last <= 1 hour.
  sas_policy {
    expiration_period = "00.01:00:00"
    expiration_action = "Log"
  }

  tags = local.tags
}

resource "azurerm_storage_container" "data" {
  #checkov:skip=CKV2_AZURE_21:The check wants azurerm_log_analytics_storage_insights, which needs a storage account key (impossible with shared keys disabled); blob reads/writes/deletes are audited by azurerm_monitor_diagnostic_setting.data_blob instead.
  name                  = var.data_container_name
  storage_account_id    = azurerm_storage_account.data.id
  container_access_type = "private"
}

# Audit log of every blob read, write and delete on the data account (Log Analytics).
resource "azurerm_monitor_diagnostic_setting" "data_blob" {
  name                       = "blob-audit"
  target_resource_id         = "${azurerm_storage_account.data.id}/blobServices/default"
  log_analytics_workspace_id = azurerm_log_analytics_workspace.main.id

  enabled_log {
    category = "StorageRead"
  }

  enabled_log {
    category = "StorageWrite"
  }

  enabled_log {
    category = "StorageDelete"
  }
}

# Read-only, and only this container: not the account, not other containers.
resource "azurerm_role_assignment" "data_reader" {
  scope                = azurerm_storage_container.data.resource_manager_id
  role_definition_name = "Storage Blob Data Reader"
  principal_id         = azurerm_user_assigned_identity.app.principal_id
  principal_type       = "ServicePrincipal"
  description          = "${var.name}: list and read the data container"
}

# Restore writes blobs back (create-only or If-Match; it never deletes). Only with
# enable_restore, and only on this container.
resource "azurerm_role_assignment" "data_contributor" {
  count                = var.enable_restore ? 1 : 0
  scope                = azurerm_storage_container.data.resource_manager_id
  role_definition_name = "Storage Blob Data Contributor"
  principal_id         = azurerm_user_assigned_identity.app.principal_id
  principal_type       = "ServicePrincipal"
  description          = "${var.name}: restore blobs from the backup into the data container"
}

# User delegation SAS (download links) needs generateUserDelegationKey, an account-level
# action. A link can never grant more than the identity itself holds (read on the
# container), so this adds no data access.
resource "azurerm_role_assignment" "data_delegator" {
  count                = var.download_links_enabled ? 1 : 0
  scope                = azurerm_storage_account.data.id
  role_definition_name = "Storage Blob Delegator"
  principal_id         = azurerm_user_assigned_identity.app.principal_id
  principal_type       = "ServicePrincipal"
  description          = "${var.name}: sign user delegation SAS download links"
}

# --- host storage account (AzureWebJobsStorage + Flex deployment package) --------------

resource "azurerm_storage_account" "host" {
  #checkov:skip=CKV_AZURE_33:Queue logging goes to Log Analytics (azurerm_monitor_diagnostic_setting.host_queue); classic Storage Analytics logging (queue_properties) is configured through the data plane with the account key, which is disabled.
  #checkov:skip=CKV_AZURE_35:The Functions host on Flex Consumption (no VNet integration) reaches its storage over the public endpoint; access is Entra-only.
  #checkov:skip=CKV_AZURE_59:Same reason as CKV_AZURE_35.
  #checkov:skip=CKV2_AZURE_33:Private endpoints need VNet integration of the Function App (not part of this baseline).
  #checkov:skip=CKV2_AZURE_1:Microsoft-managed keys plus infrastructure encryption; the account holds only host state and deployment packages rebuilt from the repo.
  #checkov:skip=CKV_AZURE_206:Host state and deployment packages are reproducible (re-deploy recreates them); geo-replication would only add cost.
  #checkov:skip=CKV_AZURE_43:Name built from validated parts (st + <=10 [a-z0-9] + 6 hex + fn = <=20 chars) via sha256() of a data source, which checkov cannot evaluate; azurerm validates it at plan time.
  name                     = "st${local.compact_name}${local.suffix}fn"
  resource_group_name      = azurerm_resource_group.main.name
  location                 = azurerm_resource_group.main.location
  account_kind             = "StorageV2"
  account_tier             = "Standard"
  account_replication_type = "LRS"

  shared_access_key_enabled         = false
  default_to_oauth_authentication   = true
  min_tls_version                   = "TLS1_2"
  https_traffic_only_enabled        = true
  allow_nested_items_to_be_public   = false
  public_network_access_enabled     = true
  infrastructure_encryption_enabled = true
  cross_tenant_replication_enabled  = false
  local_user_enabled                = false

  blob_properties {
    delete_retention_policy {
      days = var.blob_soft_delete_days
    }

    container_delete_retention_policy {
      days = var.blob_soft_delete_days
    }
  }

  sas_policy {
    expiration_period = "00.01:00:00"
    expiration_action = "Log"
  }

  tags = local.tags
}

resource "azurerm_storage_container" "deployment" {
  #checkov:skip=CKV2_AZURE_21:Holds only the deployment package written by `az functionapp deploy`; no data to audit (and storage insights would need an account key, which is disabled).
  name                  = "app-package"
  storage_account_id    = azurerm_storage_account.host.id
  container_access_type = "private"
}

# AzureWebJobsStorage with an identity: the Functions host creates and writes its own
# containers (azure-webjobs-hosts leases for the timer trigger, azure-webjobs-secrets for
# function keys) and Flex Consumption reads/writes the deployment package. Microsoft
# documents "Storage Blob Data Owner" for host storage. It is scoped to the *host* account
# only, which holds no application data, so it never widens access to the data container.
resource "azurerm_role_assignment" "host_blob_owner" {
  scope                = azurerm_storage_account.host.id
  role_definition_name = "Storage Blob Data Owner"
  principal_id         = azurerm_user_assigned_identity.app.principal_id
  principal_type       = "ServicePrincipal"
  description          = "${var.name}: Functions host storage (AzureWebJobsStorage) and deployment package"
}

# --- backup fan-out queue (docs/backup.md) ---------------------------------------------
# On the host account, never the data account: it holds no data, and the app only ever gets
# message-level roles on these two queues. Both exist before the app starts, so the host
# never needs to create the poison queue (which would take a management role).

locals {
  shard_queues = { shards = var.backup_queue_name, poison = "${var.backup_queue_name}-poison" }
  # The planner sends (Sender); the queue trigger receives, renews and deletes (Message
  # Processor) and the host's scaler and listener read queue metadata (Reader: the queue
  # trigger's roles in the Functions docs); the host moves poison messages (Sender).
  queue_roles = {
    for pair in setproduct(keys(local.shard_queues), ["Storage Queue Data Reader",
    "Storage Queue Data Message Processor", "Storage Queue Data Message Sender"]) :
    "${pair[0]}/${pair[1]}" => { queue = pair[0], role = pair[1] }
  }
}

resource "azurerm_storage_queue" "backup" {
  for_each           = local.shard_queues
  name               = each.value
  storage_account_id = azurerm_storage_account.host.id
}

resource "azurerm_role_assignment" "backup_queue" {
  for_each             = local.queue_roles
  scope                = azurerm_storage_queue.backup[each.value.queue].resource_manager_id
  role_definition_name = each.value.role
  principal_id         = azurerm_user_assigned_identity.app.principal_id
  principal_type       = "ServicePrincipal"
  description          = "${var.name}: backup fan-out (${each.value.role}) on one queue"
}

# Audit of queue operations (who sent, received, deleted shard messages).
resource "azurerm_monitor_diagnostic_setting" "host_queue" {
  name                       = "queue-audit"
  target_resource_id         = "${azurerm_storage_account.host.id}/queueServices/default"
  log_analytics_workspace_id = azurerm_log_analytics_workspace.main.id

  enabled_log {
    category = "StorageRead"
  }

  enabled_log {
    category = "StorageWrite"
  }

  enabled_log {
    category = "StorageDelete"
  }
}

# --- monitoring -----------------------------------------------------------------------

resource "azurerm_log_analytics_workspace" "main" {
  name                = "log-${var.name}"
  location            = azurerm_resource_group.main.location
  resource_group_name = azurerm_resource_group.main.name
  sku                 = "PerGB2018"
  retention_in_days   = var.log_retention_days
  tags                = local.tags
}

resource "azurerm_application_insights" "main" {
  name                = "appi-${var.name}"
  location            = azurerm_resource_group.main.location
  resource_group_name = azurerm_resource_group.main.name
  workspace_id        = azurerm_log_analytics_workspace.main.id
  application_type    = "other"
  # Entra ID authentication only: telemetry without a valid token for the identity below
  # is rejected, so the connection string alone is not a credential.
  local_authentication_disabled = true
  tags                          = local.tags
}

resource "azurerm_role_assignment" "telemetry_publisher" {
  scope                = azurerm_application_insights.main.id
  role_definition_name = "Monitoring Metrics Publisher"
  principal_id         = azurerm_user_assigned_identity.app.principal_id
  principal_type       = "ServicePrincipal"
  description          = "${var.name}: send telemetry with Entra ID authentication"
}

# --- Function App on Flex Consumption ------------------------------------------------

resource "azurerm_service_plan" "main" {
  #checkov:skip=CKV_AZURE_212:Flex Consumption (FC1) scales per execution; worker_count/minimum instances do not apply.
  #checkov:skip=CKV_AZURE_225:Zone redundancy on FC1 is only available in some regions; enable it per region if required.
  name                = "asp-${var.name}"
  location            = azurerm_resource_group.main.location
  resource_group_name = azurerm_resource_group.main.name
  os_type             = "Linux"
  sku_name            = "FC1"
  tags                = local.tags
}

locals {
  # Every app setting of the spec, from the resources that define it. Endpoints are not
  # app settings (production uses the SDKs' defaults).
  app_settings = {
    # Identity-based host storage with the user-assigned identity.
    AzureWebJobsStorage__accountName = azurerm_storage_account.host.name
    AzureWebJobsStorage__credential  = "managedidentity"
    AzureWebJobsStorage__clientId    = azurerm_user_assigned_identity.app.client_id

    # Application Insights with Entra ID authentication (local auth is disabled).
    APPLICATIONINSIGHTS_AUTHENTICATION_STRING = "ClientId=${azurerm_user_assigned_identity.app.client_id};Authorization=AAD"

    AZURE_CLIENT_ID             = azurerm_user_assigned_identity.app.client_id
    AZURE_STORAGE_CONTAINER_URL = "${azurerm_storage_account.data.primary_blob_endpoint}${azurerm_storage_container.data.name}"
    AWS_ROLE_ARN                = aws_iam_role.read.arn
    AWS_WEB_IDENTITY_AUDIENCE   = local.audience
    AWS_REGION                  = var.aws_region
    S3_BUCKET                   = aws_s3_bucket.data.bucket
    BACKUP_SCHEDULE             = var.backup_schedule
    BACKUP_S3_BUCKET            = local.backup_bucket_name
    BACKUP_S3_PREFIX            = var.backup_s3_prefix
    AWS_BACKUP_ROLE_ARN         = aws_iam_role.backup.arn
    AWS_RESTORE_ROLE_ARN        = var.enable_restore ? aws_iam_role.restore[0].arn : "" # empty: restore not set up
    BACKUP_FANOUT               = var.backup_fanout
    BACKUP_QUEUE_NAME           = azurerm_storage_queue.backup["shards"].name

    # The fan-out queue as an identity-based connection (the queue trigger's
    # connection = "CROSSCLOUD_QUEUE"), like AzureWebJobsStorage__* above.
    CROSSCLOUD_QUEUE__queueServiceUri = azurerm_storage_account.host.primary_queue_endpoint
    CROSSCLOUD_QUEUE__credential      = "managedidentity"
    CROSSCLOUD_QUEUE__clientId        = azurerm_user_assigned_identity.app.client_id
  }
}

resource "azurerm_function_app_flex_consumption" "app" {
  name                = local.function_name
  resource_group_name = azurerm_resource_group.main.name
  location            = azurerm_resource_group.main.location
  service_plan_id     = azurerm_service_plan.main.id

  runtime_name           = "python"
  runtime_version        = "3.11"
  maximum_instance_count = var.function_maximum_instance_count
  instance_memory_in_mb  = var.function_instance_memory_mb

  # Deployment package: pulled by the platform with the same user-assigned identity.
  storage_container_type            = "blobContainer"
  storage_container_endpoint        = "${azurerm_storage_account.host.primary_blob_endpoint}${azurerm_storage_container.deployment.name}"
  storage_authentication_type       = "UserAssignedIdentity"
  storage_user_assigned_identity_id = azurerm_user_assigned_identity.app.id

  identity {
    type         = "UserAssigned"
    identity_ids = [azurerm_user_assigned_identity.app.id]
  }

  https_only = true
  # No basic-auth publishing credentials: deploy with an Entra-authenticated `az`/`func`.
  webdeploy_publish_basic_authentication_enabled = false

  site_config {
    application_insights_connection_string = azurerm_application_insights.main.connection_string
    minimum_tls_version                    = "1.2"
    scm_minimum_tls_version                = "1.2"
    http2_enabled                          = true
  }

  app_settings = local.app_settings
  tags         = local.tags

  # The host must be able to reach its storage and telemetry the moment it starts.
  depends_on = [
    azurerm_role_assignment.host_blob_owner,
    azurerm_role_assignment.telemetry_publisher,
    azurerm_role_assignment.backup_queue,
  ]
}

# Work-around for hashicorp/terraform-provider-azurerm#29693: with an identity-based
# storage_authentication_type the provider still writes an `AzureWebJobsStorage`
# connection string with an empty AccountKey. A value there takes precedence over the
# AzureWebJobsStorage__* settings, so the host fails to start. This replaces the app
# settings with exactly the intended set (the PUT is a full replacement) and re-runs
# whenever the Function App is updated, because every provider update re-injects it.
resource "azapi_resource_action" "app_settings" {
  type        = "Microsoft.Web/sites/config@2024-04-01"
  resource_id = "${azurerm_function_app_flex_consumption.app.id}/config/appsettings"
  method      = "PUT"

  body = {
    properties = merge(local.app_settings, {
      APPLICATIONINSIGHTS_CONNECTION_STRING = azurerm_application_insights.main.connection_string
    })
  }

  lifecycle {
    replace_triggered_by = [azurerm_function_app_flex_consumption.app]
  }
}
